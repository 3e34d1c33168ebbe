package io.kstreams.bench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.StateRestoreListener;

/**
 * The Kafka Streams side of the side-by-side benchmark (scripts/bench.sh). The same topologies
 * as the kstreams cases:
 *
 * <ul>
 *   <li>{@code wordcount}: lines (value; key ignored) are lowercased and split on runs of
 *       characters that are not ASCII letters, digits or underscore; words are counted; counts go
 *       out as 8-byte big-endian longs;
 *   <li>{@code stateless}: drop values that start with '#', upper-case the rest;
 *   <li>{@code restore}: the word-count topology, started to restore its store from a changelog
 *       preloaded by the harness; prints {@code restore_ms=} and {@code restored=}.
 *   <li>{@code windowed-tumbling}, {@code windowed-hopping}: records counted per key (value
 *       ignored; event time = record timestamp) in 60 s windows, tumbling or hopping by 10 s, no
 *       grace; every update through the cache, as {@code <key>@<window start>} -> 8-byte count.
 *   <li>{@code stream-table-join}: each record left-joined with its key's row of the
 *       {@code <input>-table} table, as {@code <value>|<row>} ({@code <value>|?} without a row).
 * </ul>
 *
 * <p>Runs until SIGTERM, then closes. Arguments: mode bootstrap input output application-id
 * threads guarantee commit-interval-ms cache-bytes state-dir.
 */
public final class KafkaStreamsBench {

    private KafkaStreamsBench() {}

    static List<String> words(String line) {
        List<String> out = new ArrayList<>();
        String lower = line.toLowerCase(Locale.ROOT);
        int start = -1;
        for (int i = 0; i < lower.length(); i++) {
            char c = lower.charAt(i);
            boolean wordChar = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
                    || (c >= 'A' && c <= 'Z');
            if (wordChar) {
                if (start < 0) {
                    start = i;
                }
            } else if (start >= 0) {
                out.add(lower.substring(start, i));
                start = -1;
            }
        }
        if (start >= 0) {
            out.add(lower.substring(start));
        }
        return out;
    }

    static Topology wordCount(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.String()))
                .flatMapValues(line -> line == null ? List.<String>of() : words(line))
                .groupBy((key, word) -> word, Grouped.with(Serdes.String(), Serdes.String()))
                .count(Materialized.as("counts"))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        return builder.build();
    }

    static Topology windowedCount(String input, String output, Duration advance) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .groupByKey(Grouped.with(Serdes.String(), Serdes.ByteArray()))
                .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofSeconds(60)).advanceBy(advance))
                .count(Materialized.as("windowed-counts"))
                .toStream((window, count) -> window.key() + "@" + window.window().start())
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        return builder.build();
    }

    static Topology stateless(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .filter((key, value) -> value != null && !value.startsWith("#"))
                .mapValues(value -> value.toUpperCase(Locale.ROOT))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    /** Each record enriched with its row of the {@code <input>-table} table (a left join). */
    static Topology streamTableJoin(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        KTable<String, String> table = builder.table(
                input + "-table",
                Consumed.with(Serdes.String(), Serdes.String()),
                Materialized.as("customers"));
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .leftJoin(table, (value, name) -> value + "|" + (name == null ? "?" : name))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 10) {
            System.err.println("usage: mode bootstrap input output application-id threads guarantee commit-ms cache-bytes state-dir");
            System.exit(2);
        }
        String mode = args[0];
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[4]);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args[5]));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args[6]);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(args[7]));
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, Long.parseLong(args[8]));
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[9]);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

        Topology topology = switch (mode) {
            case "wordcount", "restore" -> wordCount(args[2], args[3]);
            case "stateless" -> stateless(args[2], args[3]);
            case "windowed-tumbling" -> windowedCount(args[2], args[3], Duration.ofSeconds(60));
            case "windowed-hopping" -> windowedCount(args[2], args[3], Duration.ofSeconds(10));
            case "stream-table-join" -> streamTableJoin(args[2], args[3]);
            default -> throw new IllegalArgumentException("unknown mode " + mode);
        };
        KafkaStreams streams = new KafkaStreams(topology, props);
        CountDownLatch stop = new CountDownLatch(1);
        long started = System.nanoTime();
        AtomicLong restored = new AtomicLong();
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition partition, String store, long start, long end) {}

            @Override
            public void onBatchRestored(TopicPartition partition, String store, long end, long count) {
                restored.addAndGet(count);
            }

            @Override
            public void onRestoreEnd(TopicPartition partition, String store, long total) {}
        });
        streams.setStateListener((newState, oldState) -> {
            if (newState == KafkaStreams.State.RUNNING && "restore".equals(mode)) {
                System.out.println("restore_ms=" + (System.nanoTime() - started) / 1_000_000 + " restored=" + restored.get());
                System.out.flush();
            }
            if (newState == KafkaStreams.State.ERROR) {
                System.err.println("Kafka Streams failed");
                stop.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(60));
            stop.countDown();
        }));
        streams.start();
        stop.await();
    }
}
