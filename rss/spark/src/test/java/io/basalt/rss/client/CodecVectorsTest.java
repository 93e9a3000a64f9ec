package io.basalt.rss.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The batch format against rss/client/testdata/batches.json, the vectors the Go client and this
 * client share: every batch either side encoded decodes to exactly the records. Run with
 * -Dbasalt.updateVectors=true to write this client's encodings into the file's "java" object (the
 * Go test decodes them).
 */
class CodecVectorsTest {
  private static final Path VECTORS = Path.of("../client/testdata/batches.json");
  private static final HexFormat HEX = HexFormat.of();
  private static final Pattern STRING = Pattern.compile("\"([0-9a-f]*)\"");
  private static final Pattern ENTRY = Pattern.compile("\"(\\w+)\"\\s*:\\s*\"([0-9a-f]*)\"");

  /** Returns the text of the JSON array or object that follows "key": in json. */
  private static String section(String json, String key, char open, char close) {
    int i = json.indexOf('"' + key + '"');
    int from = json.indexOf(open, i);
    return i < 0 || from < 0 ? "" : json.substring(from, json.indexOf(close, from) + 1);
  }

  private static Map<String, String> batches(String json, String side) {
    Map<String, String> out = new LinkedHashMap<>();
    Matcher m = ENTRY.matcher(section(json, side, '{', '}'));
    while (m.find()) {
      out.put(m.group(1), m.group(2));
    }
    return out;
  }

  @Test
  void decodesBothClientsBatches() throws IOException {
    String json = Files.readString(VECTORS, StandardCharsets.UTF_8);
    ByteArrayOutputStream framed = new ByteArrayOutputStream();
    List<byte[]> recs = new ArrayList<>();
    Matcher m = STRING.matcher(section(json, "records", '[', ']'));
    while (m.find()) {
      recs.add(HEX.parseHex(m.group(1)));
    }
    assertEquals(4, recs.size(), "records in " + VECTORS);
    for (byte[] rec : recs) {
      byte[] head = new byte[Varint.size(rec.length)];
      Varint.put(head, 0, rec.length);
      framed.write(head);
      framed.write(rec);
    }
    byte[] records = framed.toByteArray();
    if (Boolean.getBoolean("basalt.updateVectors")) {
      StringBuilder mine = new StringBuilder("\"java\": {");
      for (Codec c : Codec.values()) {
        mine.append(c.ordinal() == 0 ? "\n" : ",\n").append("    \"").append(c.name().toLowerCase(Locale.ROOT))
            .append("\": \"").append(HEX.formatHex(c.encode(records))).append('"');
      }
      mine.append("\n  }");
      String old = section(json, "java", '{', '}');
      json = old.isEmpty()
          ? json.replaceFirst("\"java\"\\s*:\\s*null", Matcher.quoteReplacement(mine.toString()))
          : json.replace("\"java\": " + old, mine.toString());
      Files.writeString(VECTORS, json, StandardCharsets.UTF_8);
    }
    for (String side : new String[] {"go", "java"}) {
      Map<String, String> b = batches(json, side);
      assertEquals(3, b.size(), side + " batches for each of the 3 codecs");
      b.forEach((codec, hex) -> {
        try {
          assertArrayEquals(records, Codec.decode(HEX.parseHex(hex)), side + " " + codec);
        } catch (IOException e) {
          throw new AssertionError(side + " " + codec, e);
        }
      });
    }
    for (Codec c : Codec.values()) {
      assertArrayEquals(records, Codec.decode(c.encode(records)), "round trip " + c);
    }
  }

  @Test
  void damagedBatchesAreErrors() {
    assertThrows(IOException.class, () -> Codec.decode(new byte[0]));
    assertThrows(IOException.class, () -> Codec.decode(new byte[] {9, 1, 2}));
    assertThrows(IOException.class, () -> Codec.decode(new byte[] {2, (byte) 200, 1, 7}));
    assertThrows(IOException.class, () -> Codec.decode(new byte[] {1, 5, 5, 5}));
    assertEquals(Codec.NONE.id, Codec.LZ4.encode(new byte[] {1, 2, 3})[0], "incompressible LZ4 batches are stored");
    assertThrows(IllegalArgumentException.class, () -> Codec.parse("snappy"));
    assertEquals(Codec.ZSTD, Codec.parse(" ZSTD "));
  }
}
