import { formatLatency, formatNats, formatRarity, formatShare } from '../format';

describe('format', () => {
  it('latency in ms, s and auto', () => {
    expect(formatLatency(842.4, 'auto')).toBe('842 ms');
    expect(formatLatency(12.34, 'auto')).toBe('12.3 ms');
    expect(formatLatency(1843.2, 'auto')).toBe('1.84 s');
    expect(formatLatency(1843.2, 'ms')).toBe('1,843 ms');
    expect(formatLatency(12.5, 's')).toBe('0.01 s');
    expect(formatLatency(125000, 'auto')).toBe('125 s');
    expect(formatLatency(null, 'ms')).toBe('—');
  });

  it('rarity to three significant digits', () => {
    expect(formatRarity(Math.exp(9.3))).toBe('1 in 10,900');
    expect(formatRarity(37.4)).toBe('1 in 37');
    expect(formatRarity(123456)).toBe('1 in 123,000');
    expect(formatRarity(0.5)).toBeNull();
    expect(formatRarity(null)).toBeNull();
    expect(formatRarity(3e12)).toBe('1 in 3.0 × 10¹²');
    expect(formatRarity(Math.exp(700))).toBe('1 in 10³⁰⁴');
    expect(formatRarity(2.5e15)).toBe('1 in 2.5 × 10¹⁵');
    expect(formatRarity(1e20)).toBe('1 in 10²⁰');
  });

  it('shares and nats', () => {
    expect(formatShare(0.656)).toBe('66%');
    expect(formatShare(0.0432)).toBe('4.3%');
    expect(formatShare(null)).toBe('');
    expect(formatNats(6.1234)).toBe('6.12');
    expect(formatNats(12.345)).toBe('12.3');
    expect(formatNats(17343.8)).toBe('17,344');
  });
});
