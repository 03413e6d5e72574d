/**
 * What replicas say, as they join a session, of the neighbours they could not
 * reach (session:joined `unreached`). A replica joins once it reaches a
 * majority of each neighbouring stage (web/net/neighbour-links.ts), so a
 * neighbour that never connects holds nobody out; the fault is put on that
 * neighbour only when a majority of one stage beside it names it. One replica's
 * word counts for nothing: a hostile one naming its honest neighbours costs
 * them nothing, as long as the honest are a majority of its stage (the vote's
 * own assumption).
 */
export class UnreachedReports {
  /** Neighbour → the replicas that named it. */
  private readonly by = new Map<string, Set<string>>();
  private readonly blamed = new Set<string>();

  /**
   * `reporter`, of stage `reporterStage` (whose replicas are `stageReplicas`),
   * says it joined without `target`, of stage `targetStage`. Returns how many
   * replicas of the reporter's stage named it, once that first reaches `needed`
   * (the target is to be blamed, once per session); null otherwise, and for a
   * claim about a replica not beside the reporter.
   */
  report(
    reporter: string,
    reporterStage: number,
    target: string,
    targetStage: number,
    stageReplicas: readonly string[],
    needed: number,
  ): number | null {
    if (Math.abs(reporterStage - targetStage) !== 1 || this.blamed.has(target)) return null;
    let named = this.by.get(target);
    if (named === undefined) {
      named = new Set();
      this.by.set(target, named);
    }
    named.add(reporter);
    const count = stageReplicas.filter((id) => named.has(id)).length;
    if (count < needed) return null;
    this.blamed.add(target);
    return count;
  }
}
