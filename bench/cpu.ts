/**
 * CPU time, not wall time, for comparing set-ups on a machine with fewer
 * cores than processes: this process's (the server and coordinator run in it)
 * and its descendants' (the Chromium that playwright launched: browser,
 * renderers, GPU and network processes) from /proc.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerS: number | null = null;

function clockTicks(): number {
  ticksPerS ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticksPerS;
}

/** pid → [ppid, utime + stime in ticks] for every process readable now. */
function processTable(): Map<number, [number, number]> {
  const table = new Map<number, [number, number]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      table.set(Number(name), [Number(rest[1]), Number(rest[11]) + Number(rest[12])]);
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** CPU ms of every live descendant of `root` (not `root` itself). */
export function descendantsCpuMs(root = process.pid): number {
  const table = processTable();
  const children = new Map<number, number[]>();
  for (const [pid, [ppid]] of table) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  let ticks = 0;
  const stack = [...(children.get(root) ?? [])];
  for (let pid = stack.pop(); pid !== undefined; pid = stack.pop()) {
    ticks += table.get(pid)?.[1] ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return (ticks * 1000) / clockTicks();
}

/** CPU ms of this process (user + system). */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** What a process is, for splitting CPU time: this one (server and coordinator) or a Chromium process by its --type. */
export type ProcessKind = 'server' | 'renderer' | 'gpu' | 'network' | 'utility' | 'browser' | 'other';

export const PROCESS_KINDS: readonly ProcessKind[] = ['server', 'renderer', 'browser', 'gpu', 'network', 'utility', 'other'];

/** A Chromium process's kind from its command line (NUL-separated, or space-separated where Chromium rewrote its title). */
export function kindOf(cmdline: string): ProcessKind {
  const args = cmdline.split(/[\0 ]/);
  const type = args.find((a) => a.startsWith('--type='))?.slice('--type='.length);
  if (type === undefined) return /chrom/i.test(args[0] ?? '') ? 'browser' : 'other';
  if (type === 'renderer') return 'renderer';
  if (type === 'gpu-process') return 'gpu';
  if (type === 'utility') return args.some((a) => a.includes('NetworkService')) ? 'network' : 'utility';
  return 'other';
}

/** CPU ms by kind: this process as 'server', each live descendant of it by kindOf its command line. */
export function cpuMsByKind(root = process.pid): Map<ProcessKind, number> {
  const table = processTable();
  const children = new Map<number, number[]>();
  for (const [pid, [ppid]] of table) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  const byKind = new Map<ProcessKind, number>(PROCESS_KINDS.map((k) => [k, 0]));
  byKind.set('server', selfCpuMs());
  const stack = [...(children.get(root) ?? [])];
  for (let pid = stack.pop(); pid !== undefined; pid = stack.pop()) {
    let kind: ProcessKind = 'other';
    try {
      kind = kindOf(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    } catch {
      // gone meanwhile: its ticks still count, as 'other'
    }
    byKind.set(kind, (byKind.get(kind) ?? 0) + ((table.get(pid)?.[1] ?? 0) * 1000) / clockTicks());
    stack.push(...(children.get(pid) ?? []));
  }
  return byKind;
}
