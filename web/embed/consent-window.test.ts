import { describe, expect, it } from 'vitest';
import { consentWindowParams, consentWindowUrl, framingSites, isConsentGiven, isNonce } from './consent-window.js';

const NONCE = '3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b';

describe('the consent window’s link and answer', () => {
  it('takes only a UUID nonce: the window of a link without one asks nothing', () => {
    expect(isNonce(NONCE)).toBe(true);
    for (const bad of ['', 'x', `${NONCE}0`, NONCE.toUpperCase(), null, 42]) expect(isNonce(bad), String(bad)).toBe(false);
    expect(consentWindowParams('?site=https://a.example')).toBe(
      'this window was not opened by a webswarm widget (its link has no valid nonce)',
    );
  });

  it('shows the asking site as an http(s) origin only, never a script URL or a long text', () => {
    const site = (s: string) => {
      const p = consentWindowParams(`?nonce=${NONCE}&site=${encodeURIComponent(s)}`);
      return typeof p === 'string' ? p : p.site;
    };
    expect(site('https://shop.example/some/page?q=1')).toBe('https://shop.example');
    expect(site('http://localhost:8080')).toBe('http://localhost:8080');
    expect(site('javascript:alert(1)')).toBeNull();
    expect(site('data:text/html,hi')).toBeNull();
    expect(site('not a url')).toBeNull();
    expect(site(`https://${'a'.repeat(300)}.example`)).toBeNull();
  });

  it('carries the frame’s share, pause, model and backend, and the nonce, to /consent on the frame’s own origin', () => {
    const frame = new URL('https://swarm.example/embed?share=0.5&autopause=0&model=austen-2m&backend=wasm');
    const url = new URL(consentWindowUrl(frame, NONCE, { site: 'https://shop.example', via: null }));
    expect(url.origin + url.pathname).toBe('https://swarm.example/consent/');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      nonce: NONCE,
      site: 'https://shop.example',
      share: '0.5',
      autopause: '0',
      model: 'austen-2m',
      backend: 'wasm',
    });
    expect(consentWindowParams(url.search)).toEqual({
      nonce: NONCE,
      site: 'https://shop.example',
      via: null,
      hidden: false,
      share: '0.5',
      autoPause: false,
      model: 'austen-2m',
      backend: 'wasm',
    });
  });

  it('shows a model only when it is a plain model id: a host page cannot write its own sentences into the window (data-model)', () => {
    const asked = (model: string) => consentWindowParams(`?nonce=${NONCE}&model=${encodeURIComponent(model)}`);
    expect(asked('Qwen2.5-0.5B_x')).toMatchObject({ model: 'Qwen2.5-0.5B_x' });
    // Left out, the window still asks (the frame checks the name against the swarm's models before anything loads).
    for (const text of ['austen-2m). The swarm caps widget tabs at 5 %', 'a'.repeat(101), '', 'x/../y', '<b>', 'modèle'])
      expect(asked(text), text).toMatchObject({ nonce: NONCE, model: null });
  });

  it('names the top page’s site, and the one that placed the widget where that is a frame of another site (before, the top one alone)', () => {
    // location.ancestorOrigins: nearest first.
    expect(framingSites(['https://shop.example'], '')).toEqual({ site: 'https://shop.example', via: null });
    expect(framingSites(['https://ads.example', 'https://news.example'], '')).toEqual({
      site: 'https://news.example',
      via: 'https://ads.example',
    });
    expect(framingSites(['https://news.example', 'https://ads.example', 'https://news.example'], '')).toEqual({
      site: 'https://news.example',
      via: null,
    });
    // A frame whose origin the browser hides ("null": an embedder with referrerpolicy=no-referrer): said, not dropped.
    expect(framingSites(['null', 'https://news.example'], '')).toEqual({ site: 'https://news.example', via: null, hidden: true });
    expect(framingSites(['https://ads.example', 'null', 'https://news.example'], '')).toEqual({
      site: 'https://news.example',
      via: 'https://ads.example',
      hidden: true,
    });
    expect(framingSites(['null'], '')).toEqual({ site: null, via: null, hidden: true });
    const hiddenUrl = consentWindowUrl(new URL('https://swarm.example/embed'), NONCE, framingSites(['null', 'https://news.example'], ''));
    expect(consentWindowParams(new URL(hiddenUrl).search)).toMatchObject({ site: 'https://news.example', via: null, hidden: true });
    // No ancestorOrigins (Firefox): the referrer's origin, nothing more known.
    expect(framingSites(null, 'https://shop.example/page?x=1')).toEqual({ site: 'https://shop.example', via: null });
    expect(framingSites(null, '')).toEqual({ site: null, via: null });
    const url = new URL(
      consentWindowUrl(new URL('https://swarm.example/embed'), NONCE, { site: 'https://news.example', via: 'https://ads.example' }),
    );
    expect(consentWindowParams(url.search)).toMatchObject({ site: 'https://news.example', via: 'https://ads.example' });
    // Sanitised as the site is; the same as the site, not said twice.
    expect(consentWindowParams(`?nonce=${NONCE}&site=https://a.example&via=javascript:alert(1)`)).toMatchObject({ via: null });
    expect(consentWindowParams(`?nonce=${NONCE}&site=https://a.example&via=https://a.example/x`)).toMatchObject({ via: null });
  });

  it('takes an answer only with the nonce the frame gave', () => {
    expect(isConsentGiven({ source: 'webswarm', type: 'consent', nonce: NONCE, scale: 2 }, NONCE)).toBe(true);
    for (const m of [
      { source: 'webswarm', type: 'consent', nonce: '00000000-0000-4000-8000-000000000000', scale: 1 },
      { source: 'webswarm', type: 'consent', scale: 1 },
      // The consent window's scale: a devicePixelRatio a window can have.
      ...[undefined, 0, -1, Number.NaN, 65, '1'].map((scale) => ({ source: 'webswarm', type: 'consent', nonce: NONCE, scale })),
      { source: 'other', type: 'consent', nonce: NONCE },
      { source: 'webswarm', type: 'resume', nonce: NONCE },
      'consent',
      null,
    ])
      expect(isConsentGiven(m, NONCE), JSON.stringify(m)).toBe(false);
  });
});
