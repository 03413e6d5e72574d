export interface Series {
  readonly name: string;
  readonly color: string;
  readonly values: readonly number[];
}

const W = 320;
const H = 110;
const PAD = { left: 34, right: 6, top: 8, bottom: 18 };

/** A small line plot over time (SVG): one line per series, the newest sample on the right. */
export function Plot({ title, series, span, unit }: { title: string; series: readonly Series[]; span: number; unit?: string }) {
  const n = Math.max(2, span);
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const x = (i: number, len: number) => PAD.left + ((W - PAD.left - PAD.right) * (n - len + i)) / (n - 1);
  const y = (v: number) => H - PAD.bottom - ((H - PAD.top - PAD.bottom) * v) / max;
  const last = series.map((s) => s.values.at(-1) ?? 0);
  return (
    <figure className="plot">
      <figcaption>
        {title}{' '}
        <span className="small">
          {series.map((s, i) => (
            <span key={s.name} style={{ color: s.color }}>
              {series.length > 1 ? `${s.name} ` : ''}
              {Number.isInteger(last[i]) ? last[i] : (last[i] ?? 0).toFixed(1)}
              {unit ?? ''}
              {i + 1 < series.length ? ' · ' : ''}
            </span>
          ))}
        </span>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title} over the last ${span} seconds`}>
        <line x1={PAD.left} x2={W - PAD.right} y1={H - PAD.bottom} y2={H - PAD.bottom} className="axis" />
        <line x1={PAD.left} x2={W - PAD.right} y1={PAD.top} y2={PAD.top} className="grid" />
        <text x={PAD.left - 4} y={PAD.top + 4} textAnchor="end" className="tick">
          {max >= 100 ? Math.round(max) : Number(max.toPrecision(2))}
        </text>
        <text x={PAD.left - 4} y={H - PAD.bottom} textAnchor="end" className="tick">
          0
        </text>
        <text x={W - PAD.right} y={H - 4} textAnchor="end" className="tick">
          now
        </text>
        <text x={PAD.left} y={H - 4} className="tick">
          −{span} s
        </text>
        {series.map((s) =>
          s.values.length < 2 ? null : (
            <polyline
              key={s.name}
              fill="none"
              stroke={s.color}
              strokeWidth={1.5}
              points={s.values.map((v, i) => `${x(i, s.values.length).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}
            />
          ),
        )}
      </svg>
    </figure>
  );
}
