/** The longest the event loop went without a turn while `work` ran (a 1 ms timer's longest gap), in ms. */
export async function longestStall(work: () => Promise<unknown>): Promise<number> {
  let last = performance.now();
  let longest = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 1);
  try {
    await work();
  } finally {
    clearInterval(tick);
  }
  // A loop held to the end never ran the tick at all.
  return Math.max(longest, performance.now() - last);
}
