package io.basalt.rss.client;

/** Unsigned LEB128 varints, as Go's encoding/binary Uvarint. */
final class Varint {
  private Varint() {}

  /** Returns the encoded size of v (v >= 0). */
  static int size(long v) {
    int n = 1;
    while ((v >>>= 7) != 0) {
      n++;
    }
    return n;
  }

  /** Writes v at b[off] and returns the offset after it. */
  static int put(byte[] b, int off, long v) {
    while ((v & ~0x7FL) != 0) {
      b[off++] = (byte) ((v & 0x7F) | 0x80);
      v >>>= 7;
    }
    b[off++] = (byte) v;
    return off;
  }

  /** Reads a varint at b[off]: {value, offset after it}, or null if malformed or truncated. */
  static long[] get(byte[] b, int off) {
    long v = 0;
    for (int shift = 0; shift < 64 && off < b.length; shift += 7) {
      byte x = b[off++];
      v |= (long) (x & 0x7F) << shift;
      if ((x & 0x80) == 0) {
        return v < 0 ? null : new long[] {v, off};
      }
    }
    return null;
  }
}
