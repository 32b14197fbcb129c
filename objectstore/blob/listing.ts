/**
 * S3's delimiter roll-up, for every store's listings (objects and multipart
 * uploads): keys under the prefix that hold the delimiter after it collapse
 * into one common prefix each, and the page holds at most `max` entries,
 * keys and common prefixes together.
 */

/** The common prefix `key` rolls up into (up to and including the first delimiter after `prefix`), or undefined. */
export function commonPrefixOf(key: string, prefix: string, delimiter: string | undefined): string | undefined {
  if (!delimiter) return undefined;
  const i = key.indexOf(delimiter, prefix.length);
  return i >= 0 ? key.slice(0, i + delimiter.length) : undefined;
}

/** One page of a listing, filled by offering keys in order. */
export class RollUp<T> {
  readonly items: T[] = [];
  readonly commonPrefixes: string[] = [];
  isTruncated = false;
  /** The last key or common prefix the page took. */
  last?: string;

  constructor(private readonly prefix: string, private readonly delimiter: string | undefined, private readonly max: number) {}

  /**
   * Offers the next key (in order, under the prefix) and its item. Returns
   * "full" when the page is already full (it is then truncated: stop), the
   * new common prefix when the key started one (a caller with a cursor seeks
   * past it), and undefined otherwise (the item was taken, or its common
   * prefix already was).
   */
  offer(key: string, item: () => T): "full" | { prefix: string } | undefined {
    const cp = commonPrefixOf(key, this.prefix, this.delimiter);
    if (cp !== undefined && cp === this.last) return undefined;
    if (this.items.length + this.commonPrefixes.length >= this.max) {
      this.isTruncated = true;
      return "full";
    }
    if (cp !== undefined) {
      this.commonPrefixes.push(cp);
      this.last = cp;
      return { prefix: cp };
    }
    this.items.push(item());
    this.last = key;
    return undefined;
  }
}
