/** The parts of a keydown the prompt box looks at. */
export interface PromptKey {
  readonly key: string;
  readonly shiftKey: boolean;
  /** True while an input method (IME) is composing: its Enter commits the composition. */
  readonly isComposing: boolean;
  /** 229 is what browsers report for keys an IME handles (Safari sends the committing Enter with 229 and isComposing false). */
  readonly keyCode: number;
}

/** Enter sends; Shift+Enter (the browser's default: a newline) and an IME's Enter do not. */
export function promptKeyAction(e: PromptKey): 'send' | 'default' {
  if (e.key !== 'Enter' || e.shiftKey || e.isComposing || e.keyCode === 229) return 'default';
  return 'send';
}
