import { clampNumber } from '../loader/editors';

describe("the loader host's number editor", () => {
  it('keeps a value within the settings the options builder gave it', () => {
    const settings = { min: 1, max: 50, integer: true };
    expect(clampNumber('3', settings, 5)).toBe(3);
    expect(clampNumber('0', settings, 5)).toBe(1);
    expect(clampNumber('99', settings, 5)).toBe(50);
    expect(clampNumber('2.6', settings, 5)).toBe(3);
    expect(clampNumber('', settings, 5)).toBe(5);
    expect(clampNumber('abc', settings, 5)).toBe(5);
    expect(clampNumber('2.5', undefined, 5)).toBe(2.5);
  });
});
