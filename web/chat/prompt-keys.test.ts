import { describe, expect, it } from 'vitest';
import { type PromptKey, promptKeyAction } from './prompt-keys.js';

const key = (k: Partial<PromptKey>): PromptKey => ({ key: 'Enter', shiftKey: false, isComposing: false, keyCode: 13, ...k });

describe('promptKeyAction', () => {
  it('sends on Enter', () => {
    expect(promptKeyAction(key({}))).toBe('send');
  });

  it('leaves Shift+Enter to the browser (a newline)', () => {
    expect(promptKeyAction(key({ shiftKey: true }))).toBe('default');
  });

  it('does not send the Enter that commits an IME composition', () => {
    expect(promptKeyAction(key({ isComposing: true }))).toBe('default');
    expect(promptKeyAction(key({ keyCode: 229 }))).toBe('default');
  });

  it('leaves other keys alone', () => {
    expect(promptKeyAction(key({ key: 'a', keyCode: 65 }))).toBe('default');
  });
});
