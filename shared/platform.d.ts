/**
 * The few globals shared/ uses. They exist in browsers, Web Workers and Node ≥ 20
 * alike; shared/ is compiled without DOM or Node types (tsconfig.shared.json) so
 * that nothing else of either platform slips in.
 */
declare const crypto: { readonly subtle: { digest(algorithm: 'SHA-256', data: Uint8Array): Promise<ArrayBuffer> } };
declare const performance: { now(): number };
declare class TextDecoder {
  /** fatal: a byte sequence that is not `label` throws a TypeError (instead of U+FFFD). */
  constructor(label?: 'utf-8', options?: { readonly fatal?: boolean });
  decode(input?: Uint8Array): string;
}
declare function setTimeout(callback: (...args: unknown[]) => void, ms?: number): unknown;
declare function clearTimeout(handle: unknown): void;
