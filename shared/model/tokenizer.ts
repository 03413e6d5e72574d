import { TokenizerLoader } from '@lenml/tokenizers';
import { ModelError } from './errors.js';

/** One message of a chat, as OpenAI's chat completions take it. */
export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
  /** A participant's name (OpenAI's `name`): the chat template reads it where it does; the plain transcript writes it. */
  readonly name?: string;
}

/** A special token's text, or null (the library refuses to load a config that writes one in another form). */
function tokenText(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** A tokenizer's special tokens and chat template, as tokenizer_config.json gives them. */
export interface TokenizerSpecials {
  readonly eos: string | null;
  readonly bos: string | null;
  readonly pad: string | null;
  readonly chatTemplate: string | null;
}

/**
 * A Hugging Face tokenizer.json, encoded and decoded by @lenml/tokenizers
 * (a maintained port of transformers.js's tokenizers) rather than by hand.
 */
export class Tokenizer {
  private readonly inner: ReturnType<typeof TokenizerLoader.fromPreTrained>;

  private constructor(
    inner: ReturnType<typeof TokenizerLoader.fromPreTrained>,
    /** tokenizer_config.json's pad token: the library falls back to the end-of-text token where it names none. */
    private readonly padToken: string | null,
  ) {
    this.inner = inner;
  }

  /** Builds from the texts of tokenizer.json and (optionally) tokenizer_config.json. */
  static fromJson(file: string, tokenizerJson: string, tokenizerConfigJson: string | null): Tokenizer {
    let json: unknown;
    let config: unknown = {};
    try {
      json = JSON.parse(tokenizerJson);
      if (tokenizerConfigJson !== null) config = JSON.parse(tokenizerConfigJson);
    } catch (e) {
      throw new ModelError('ERR_MODEL_BAD_TOKENIZER', file, `not JSON (${(e as Error).message})`);
    }
    if (typeof json !== 'object' || json === null || typeof (json as { model?: unknown }).model !== 'object') {
      throw new ModelError('ERR_MODEL_BAD_TOKENIZER', file, 'has no "model" section; is it a Hugging Face tokenizer.json?');
    }
    let t: Tokenizer;
    try {
      t = new Tokenizer(
        TokenizerLoader.fromPreTrained({
          tokenizerJSON: json as Parameters<typeof TokenizerLoader.fromPreTrained>[0]['tokenizerJSON'],
          tokenizerConfig: config as Parameters<typeof TokenizerLoader.fromPreTrained>[0]['tokenizerConfig'],
        }),
        tokenText((config as { pad_token?: unknown }).pad_token),
      );
    } catch (e) {
      throw new ModelError('ERR_MODEL_BAD_TOKENIZER', file, `cannot be loaded (${(e as Error).message})`);
    }
    // A template that cannot render one user message renders no chat: the model folder's fault, said at load, not
    // a 400 blamed on every request's messages (a stranger's pass).
    if (t.special.chatTemplate !== null) {
      try {
        t.chatPrompt([{ role: 'user', content: 'Hello' }]);
      } catch (e) {
        throw new ModelError(
          'ERR_MODEL_BAD_TOKENIZER',
          'tokenizer_config.json',
          `its chat_template cannot render one user message, so no chat would be served: ${(e as Error).message.replace(/^.*chat_template failed: /, '')}`,
        );
      }
    }
    return t;
  }

  /** Token ids of `text`, without special tokens added around it. */
  encode(text: string): number[] {
    return this.inner.encode(text, { add_special_tokens: false });
  }

  /**
   * The prompt for a chat: the tokenizer_config.json's Jinja `chat_template` when the model has one,
   * else a plain "role: content" transcript; ends where the assistant's reply begins, or, with
   * `addGenerationPrompt` false, after the last message (the template's `add_generation_prompt`; the
   * transcript's "assistant:" line).
   */
  chatPrompt(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    if (this.inner.chat_template === undefined || this.inner.chat_template === null) {
      const transcript = messages.map((m) => `${m.role}${m.name === undefined ? '' : ` (${m.name})`}: ${m.content}`).join('\n');
      return addGenerationPrompt ? `${transcript}\nassistant:` : transcript;
    }
    try {
      const out = this.inner.apply_chat_template(
        messages.map((m) => ({ role: m.role, content: m.content, ...(m.name === undefined ? {} : { name: m.name }) })),
        { tokenize: false, add_generation_prompt: addGenerationPrompt },
      );
      if (typeof out !== 'string') throw new Error('the template did not give text');
      return out;
    } catch (e) {
      throw new ModelError('ERR_MODEL_BAD_TOKENIZER', 'tokenizer_config.json', `chat_template failed: ${(e as Error).message}`);
    }
  }

  /** The special tokens' texts (null where the tokenizer has none) and the Jinja chat template, if any. */
  get special(): TokenizerSpecials {
    return {
      eos: tokenText(this.inner.eos_token),
      bos: tokenText(this.inner.bos_token),
      pad: this.padToken,
      chatTemplate: typeof this.inner.chat_template === 'string' ? this.inner.chat_template : null,
    };
  }

  /**
   * Text of `ids`; special tokens are kept so that nothing is hidden. Spaces are never "cleaned up"
   * (`clean_up_tokenization_spaces`, which the library applies when a tokenizer_config.json says so or says nothing:
   * " ," becomes ","): a streamed answer is the text of its tokens so far, and that clean-up rewrote text already
   * sent, after which the answer's text stopped growing and its stop sequences went unseen (as vLLM's streams, the
   * text is the tokens' decoding as it is).
   */
  decode(ids: readonly number[]): string {
    return this.inner.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }
}
