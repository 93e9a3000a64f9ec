package io.basalt.rss.client;

import io.grpc.ClientInterceptor;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.MetadataUtils;
import java.util.concurrent.TimeUnit;

/** gRPC channels of one application: plaintext, its id and token in every call's metadata. */
final class Channels {
  static final Metadata.Key<String> APP = Metadata.Key.of("basalt-rss-app", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> TOKEN = Metadata.Key.of("basalt-rss-token", Metadata.ASCII_STRING_MARSHALLER);

  /** Largest message accepted: fetch responses carry batches of up to a few MiB. */
  static final int MAX_MESSAGE = 64 << 20;

  private final ClientInterceptor creds;

  Channels(String appId, String token) {
    Metadata md = new Metadata();
    md.put(APP, appId);
    md.put(TOKEN, token);
    creds = MetadataUtils.newAttachHeadersInterceptor(md);
  }

  /**
   * Opens a channel to host:port. The builder is the shaded Netty one, named directly, so no
   * service loader (which relocation and Spark's class loaders make fragile) is involved.
   */
  ManagedChannel open(String addr) {
    Object[] hp = RssConfig.hostPort(addr);
    return NettyChannelBuilder.forAddress((String) hp[0], (Integer) hp[1])
        .usePlaintext()
        .maxInboundMessageSize(MAX_MESSAGE)
        .keepAliveTime(30, TimeUnit.SECONDS)
        .intercept(creds)
        .build();
  }

  static void close(ManagedChannel c) {
    c.shutdownNow();
    try {
      c.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
