/**
 * The parent this process had when this module was loaded: a parent that ends during a long start (a build, the
 * stages) is noticed at the first look, not taken for the parent.
 */
const FIRST_PARENT = process.ppid;

/**
 * Calls `gone` once the process that started this one has exited (this one
 * re-parented: its parent process id changed). `npm start` ran the server as
 * npm's grandchild (npm, then a shell); a process manager that signals npm's
 * own process id alone (systemd's KillMode=process, a `kill` of the PID it
 * recorded) ended npm and the shell and left the server running on its port
 * (an operator's find). package.json's start script execs node, so that npm
 * is the parent (a shell between them outlived a SIGKILL of npm). The watch
 * does not keep the process alive.
 */
export function whenParentGone(gone: () => void, everyMs = 1_000, parent = FIRST_PARENT): void {
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    gone();
  }, everyMs);
  timer.unref();
}
