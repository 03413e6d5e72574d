import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { goldenModelDir, readGolden } from '../../testing/golden.js';
import { ModelError } from './errors.js';
import { Tokenizer } from './tokenizer.js';

const dir = goldenModelDir('tiny-untied');
const tokenizer = Tokenizer.fromJson(
  'tokenizer.json',
  readFileSync(`${dir}/tokenizer.json`, 'utf8'),
  readFileSync(`${dir}/tokenizer_config.json`, 'utf8'),
);

describe('tokenizer', () => {
  it('gives the ids of the Python BPE that trained it', () => {
    for (const p of readGolden('tiny-untied').prompts) expect(tokenizer.encode(p.text)).toEqual(p.ids);
  });

  it.each([
    'Emma Woodhouse, handsome, clever, and rich,',
    '  two  spaces,\nnew lines\n\n and ünïcödé — “quotes” 123',
    'end of text <|endoftext|> inside',
  ])('round-trips %j', (text) => {
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
  });

  it("decodes the tokens as they are, whatever tokenizer_config.json's clean_up_tokenization_spaces says: text only grows", () => {
    const json = readFileSync(`${dir}/tokenizer.json`, 'utf8');
    const config = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;
    // Said true, or not said (the library's default is true): " " then "," was decoded "," (the space taken back).
    for (const cleanup of [true, undefined]) {
      const t = Tokenizer.fromJson('t.json', json, JSON.stringify({ ...config, clean_up_tokenization_spaces: cleanup }));
      const ids = t.encode(" , ' s n't .");
      let text = '';
      for (let i = 1; i <= ids.length; i++) {
        const next = t.decode(ids.slice(0, i));
        expect(next.startsWith(text), `after ${i} of ${ids.length} ids`).toBe(true);
        text = next;
      }
      expect(text).toBe(" , ' s n't .");
    }
  });

  it('keeps the special end-of-text token whole', () => {
    expect(tokenizer.encode('a<|endoftext|>b')).toContain(0);
  });

  it('names its special tokens as tokenizer_config.json does: no pad token unless it names one', () => {
    const json = readFileSync(`${dir}/tokenizer.json`, 'utf8');
    const config = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;
    expect(tokenizer.special).toMatchObject({ eos: '<|endoftext|>', bos: null, pad: null });
    const named = Tokenizer.fromJson('t.json', json, JSON.stringify({ ...config, pad_token: '<|endoftext|>' }));
    expect(named.special).toMatchObject({ eos: '<|endoftext|>', pad: '<|endoftext|>' });
    expect(Tokenizer.fromJson('t.json', json, null).special).toEqual({ eos: null, bos: null, pad: null, chatTemplate: null });
  });

  it("gives a message's name to the chat template, and writes it in the plain transcript", () => {
    const json = readFileSync(`${dir}/tokenizer.json`, 'utf8');
    const template = "{% for m in messages %}{{ m['name'] if m['name'] is defined else m['role'] }}: {{ m['content'] }}\n{% endfor %}";
    const t = Tokenizer.fromJson('t.json', json, JSON.stringify({ chat_template: template }));
    expect(
      t.chatPrompt(
        [
          { role: 'user', content: 'Hi', name: 'Harriet' },
          { role: 'user', content: 'Yes' },
        ],
        false,
      ),
    ).toBe('Harriet: Hi\nuser: Yes\n');
    expect(Tokenizer.fromJson('t.json', json, null).chatPrompt([{ role: 'user', content: 'Hi', name: 'Harriet' }])).toBe(
      'user (Harriet): Hi\nassistant:',
    );
  });

  it('renders a chat without a template as a "role: content" transcript, the assistant\'s line last unless told not to', () => {
    const chat = [
      { role: 'system', content: 'At Hartfield.' },
      { role: 'user', content: 'Good morning.' },
    ] as const;
    expect(tokenizer.special.chatTemplate).toBeNull();
    expect(tokenizer.chatPrompt(chat)).toBe('system: At Hartfield.\nuser: Good morning.\nassistant:');
    expect(tokenizer.chatPrompt(chat, false)).toBe('system: At Hartfield.\nuser: Good morning.');
  });

  it('renders a chat by its Jinja template, with the generation prompt or (add_generation_prompt false) without', () => {
    const austen = Tokenizer.fromJson(
      'tokenizer.json',
      readFileSync('models/austen-2m/tokenizer.json', 'utf8'),
      readFileSync('models/austen-2m/tokenizer_config.json', 'utf8'),
    );
    const chat = [
      { role: 'user', content: 'Good morning.' },
      { role: 'assistant', content: 'Good morning to you.' },
    ] as const;
    // austen-2m's template, written out: the chat as prose dialogue, the reply opened last.
    const rendered = 'The visitor said, "Good morning."\n\nElizabeth replied, "Good morning to you."\n\n';
    expect(austen.chatPrompt(chat)).toBe(`${rendered}Elizabeth replied, "`);
    expect(austen.chatPrompt(chat, false)).toBe(rendered);
  });

  it('refuses at load a chat template that cannot render one user message (before: every chat request a 400 blamed on its messages)', () => {
    const json = readFileSync('models/austen-2m/tokenizer.json', 'utf8');
    const config = JSON.parse(readFileSync('models/austen-2m/tokenizer_config.json', 'utf8')) as Record<string, unknown>;
    const broken = JSON.stringify({ ...config, chat_template: '{% for m in messages %}{{ m.content }' });
    expect(() => Tokenizer.fromJson('tokenizer.json', json, broken)).toThrowError(
      /tokenizer_config\.json: its chat_template cannot render one user message, so no chat would be served: /,
    );
    // One that refuses some chats only (a rule of its own) loads; those chats are the requests' to fix.
    const strict = JSON.stringify({
      ...config,
      chat_template:
        "{% for m in messages %}{% if m.role == 'system' and not loop.first %}{{ raise_exception('system first') }}{% endif %}{{ m.content }}{% endfor %}",
    });
    const t = Tokenizer.fromJson('tokenizer.json', json, strict);
    expect(() =>
      t.chatPrompt([
        { role: 'user', content: 'a' },
        { role: 'system', content: 'b' },
      ]),
    ).toThrowError(/system first/);
  });

  it('refuses a file that is not a tokenizer', () => {
    expect(() => Tokenizer.fromJson('t.json', '{"vocab": {}}', null)).toThrowError(ModelError);
    expect(() => Tokenizer.fromJson('t.json', 'not json', null)).toThrowError(/t.json: not JSON/);
  });
});
