package io.basalt.rss.client;

import com.github.luben.zstd.Zstd;
import java.io.IOException;
import java.util.Locale;
import net.jpountz.lz4.LZ4Compressor;
import net.jpountz.lz4.LZ4Factory;
import net.jpountz.lz4.LZ4SafeDecompressor;

/**
 * The compression of a batch's data, byte-compatible with the Go client (rss/client/codec.go):
 * the first byte names the codec, the rest is the framed records (each a uvarint length and its
 * bytes), stored as they are (NONE), as one Zstd frame (ZSTD) or as the uncompressed length
 * (uvarint) and one LZ4 block (LZ4). Records LZ4 cannot shrink are stored as NONE.
 */
public enum Codec {
  NONE(0),
  ZSTD(1),
  LZ4(2);

  /** Bounds the uncompressed size a batch may claim, as the Go client does. */
  static final int MAX_BATCH_RECORDS = 1 << 30;

  private static final LZ4Factory LZ4_FACTORY = LZ4Factory.fastestInstance();

  final byte id;

  Codec(int id) {
    this.id = (byte) id;
  }

  /** Parses a codec name: lz4, zstd or none (case-insensitive). */
  public static Codec parse(String name) {
    switch (name.trim().toLowerCase(Locale.ROOT)) {
      case "lz4":
        return LZ4;
      case "zstd":
        return ZSTD;
      case "none":
        return NONE;
      default:
        throw new IllegalArgumentException("unknown compression codec \"" + name + "\" (lz4, zstd or none)");
    }
  }

  /** Returns a batch's data holding one record, rec[off, off+len). */
  byte[] encodeOne(byte[] rec, int off, int len) {
    byte[] framed = new byte[Varint.size(len) + len];
    int head = Varint.put(framed, 0, len);
    System.arraycopy(rec, off, framed, head, len);
    return encode(framed);
  }

  /** Returns a batch's data for framed records. */
  byte[] encode(byte[] records) {
    switch (this) {
      case ZSTD:
        {
          byte[] z = Zstd.compress(records, 1);
          byte[] out = new byte[1 + z.length];
          out[0] = id;
          System.arraycopy(z, 0, out, 1, z.length);
          return out;
        }
      case LZ4:
        {
          LZ4Compressor c = LZ4_FACTORY.fastCompressor();
          int head = 1 + Varint.size(records.length);
          byte[] out = new byte[head + c.maxCompressedLength(records.length)];
          out[0] = id;
          Varint.put(out, 1, records.length);
          int n = c.compress(records, 0, records.length, out, head, out.length - head);
          if (n > 0 && n < records.length) {
            return java.util.Arrays.copyOf(out, head + n);
          }
          return stored(records);
        }
      default:
        return stored(records);
    }
  }

  private static byte[] stored(byte[] records) {
    byte[] out = new byte[1 + records.length];
    out[0] = NONE.id;
    System.arraycopy(records, 0, out, 1, records.length);
    return out;
  }

  /** Returns the framed records of a batch's data. */
  static byte[] decode(byte[] data) throws IOException {
    if (data.length == 0) {
      throw new IOException("empty batch");
    }
    switch (data[0]) {
      case 0:
        return java.util.Arrays.copyOfRange(data, 1, data.length);
      case 1:
        {
          long n = Zstd.decompressedSize(data, 1, data.length - 1);
          if (n < 0 || n > MAX_BATCH_RECORDS) {
            throw new IOException("malformed zstd batch header");
          }
          byte[] out = new byte[(int) n];
          long m = Zstd.decompressByteArray(out, 0, out.length, data, 1, data.length - 1);
          if (Zstd.isError(m) || m != n) {
            throw new IOException("decoding zstd batch: " + (Zstd.isError(m) ? Zstd.getErrorName(m) : m + " of " + n + " bytes"));
          }
          return out;
        }
      case 2:
        {
          long[] hdr = Varint.get(data, 1);
          if (hdr == null || hdr[0] > MAX_BATCH_RECORDS) {
            throw new IOException("malformed lz4 batch header");
          }
          int head = (int) hdr[1];
          byte[] out = new byte[(int) hdr[0]];
          LZ4SafeDecompressor d = LZ4_FACTORY.safeDecompressor();
          int m;
          try {
            m = d.decompress(data, head, data.length - head, out, 0, out.length);
          } catch (RuntimeException e) {
            throw new IOException("decoding lz4 batch: " + e.getMessage(), e);
          }
          if (m != out.length) {
            throw new IOException("lz4 batch: " + m + " of " + out.length + " bytes");
          }
          return out;
        }
      default:
        throw new IOException("unknown codec byte " + data[0]);
    }
  }
}
