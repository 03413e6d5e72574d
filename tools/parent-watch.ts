/**
 * Calls `gone` once the process that started this one has exited (this one
 * re-parented: its parent process id changed). `npm start` runs the server as
 * npm's grandchild (npm, then a shell); a process manager that signals npm's
 * own process id alone (systemd's KillMode=process, a `kill` of the PID it
 * recorded) ended npm and the shell and left the server running on its port
 * (an operator's find). The watch does not keep the process alive.
 */
export function whenParentGone(gone: () => void, everyMs = 1_000): () => void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    gone();
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
