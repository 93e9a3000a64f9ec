/**
 * The Spark side of the Basalt shuffle plugin: {@link
 * io.basalt.rss.spark.BasaltShuffleManager} (spark.shuffle.manager) writes and reads shuffles
 * through the RSS, and {@link io.basalt.rss.spark.BasaltShuffleDataIO}
 * (spark.shuffle.sort.io.plugin.class) tells Spark the data survives executors. Design:
 * docs/spark.md.
 *
 * <p>It owns the mapping of Spark's shuffles onto RSS shuffles (one generation per run of a map
 * stage, {@link io.basalt.rss.spark.RssShuffles}), map statuses at a location no executor owns,
 * reading the attempt Spark's map output tracker registered, turning lost data into fetch
 * failures, and the plugin's settings ({@code spark.basalt.rss.*}). SparkCompat (src/spark3,
 * src/spark4) holds what differs between Spark 3.5 and Spark 4. Writers and readers run on
 * their task's thread; the manager is shared by every task of an executor.
 */
package io.basalt.rss.spark;
