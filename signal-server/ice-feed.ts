import type { IceConfig } from '../shared/protocol/messages.js';
import { type IceOptions, iceConfigFor, renews } from './ice-config.js';

/** What the feed uses of a server-side socket. */
export interface IceSocket {
  readonly connected: boolean;
  emit(event: 'volunteer:ice', m: IceConfig): unknown;
  onAnyOutgoing(listener: (event: string, ...args: unknown[]) => void): unknown;
  on(event: 'disconnect', listener: () => void): unknown;
}

/**
 * Hands each volunteer its ICE configuration (`volunteer:ice`) right after
 * the server welcomes it (the welcome names its id, which the TURN user name
 * carries), and, when TURN credentials are made with a secret, fresh ones at
 * half their lifetime for as long as it stays connected. Nothing is logged.
 */
export class IceFeed {
  private readonly renewMs: number | null;

  constructor(
    private readonly options: IceOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.renewMs = renews(options) ? (options.turnTtlS * 1000) / 2 : null;
  }

  attach(socket: IceSocket): void {
    let timer: ReturnType<typeof setTimeout> | null = null;
    const stop = () => {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    };
    const send = (volunteerId: string) => {
      stop();
      if (!socket.connected) return;
      socket.emit('volunteer:ice', iceConfigFor(this.options, volunteerId, this.now()));
      if (this.renewMs === null) return;
      timer = setTimeout(() => send(volunteerId), this.renewMs);
      timer.unref();
    };
    socket.onAnyOutgoing((event, ...args) => {
      if (event !== 'volunteer:welcome') return;
      const id = (args[0] as { volunteerId?: unknown } | undefined)?.volunteerId;
      // After the welcome itself has gone out (outgoing listeners run before the packet is sent).
      if (typeof id === 'string') queueMicrotask(() => send(id));
    });
    socket.on('disconnect', stop);
  }
}
