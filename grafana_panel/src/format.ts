/** How numbers are written in the panel: latencies in the chosen unit, rarity, shares and nats. */
import { LatencyUnit } from './types';

function trimmed(value: number, digits: number): string {
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** "842 ms", "1.24 s", "12.3 ms", "—" for unknown. */
export function formatLatency(ms: number | null | undefined, unit: LatencyUnit): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) {
    return '—';
  }
  const useSeconds = unit === 's' || (unit === 'auto' && Math.abs(ms) >= 1000);
  if (useSeconds) {
    const s = ms / 1000;
    return `${trimmed(s, Math.abs(s) >= 100 ? 0 : Math.abs(s) >= 10 ? 1 : 2)} s`;
  }
  return `${trimmed(ms, Math.abs(ms) >= 100 ? 0 : Math.abs(ms) >= 10 ? 1 : 2)} ms`;
}

const SUPERSCRIPT = '⁰¹²³⁴⁵⁶⁷⁸⁹';

/** "1 in 12,400" style: rounded to 3 significant digits so it reads at a glance. */
export function formatRarity(rarerThan: number | null | undefined): string | null {
  if (rarerThan === null || rarerThan === undefined || !Number.isFinite(rarerThan) || rarerThan < 1) {
    return null;
  }
  if (rarerThan >= 1e9) {
    const [mantissa, exponent] = rarerThan.toExponential(1).split('e+');
    const power = `10${exponent.replace(/\d/g, (d) => SUPERSCRIPT[Number(d)])}`;
    return mantissa === '1.0' ? `1 in ${power}` : `1 in ${mantissa} × ${power}`;
  }
  const digits = Math.max(0, Math.floor(Math.log10(rarerThan)) - 2);
  const rounded = Math.round(rarerThan / 10 ** digits) * 10 ** digits;
  return `1 in ${rounded.toLocaleString('en-US')}`;
}

export function formatShare(share: number | null | undefined): string {
  if (share === null || share === undefined || !Number.isFinite(share)) {
    return '';
  }
  const pct = share * 100;
  return `${trimmed(pct, Math.abs(pct) < 10 ? 1 : 0)}%`;
}

export function formatNats(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return '—';
  }
  return trimmed(value, Math.abs(value) >= 1000 ? 0 : Math.abs(value) >= 10 ? 1 : 2);
}

/** Human label of a node kind. */
export function kindLabel(kind: string): string | null {
  switch (kind) {
    case 'call_gap':
      return 'network';
    case 'db':
      return 'database';
    case 'messaging':
      return 'messaging';
    default:
      return null;
  }
}
