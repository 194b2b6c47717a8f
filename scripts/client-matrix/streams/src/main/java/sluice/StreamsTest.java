package sluice;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.WindowStore;

/**
 * Kafka Streams against a broker: (a) a word count, whose groupBy goes through a repartition
 * topic and whose count lives in a state store backed by a changelog topic, and (b) a count per
 * key in tumbling 10 s windows (a window store and its changelog). Input is generated from a
 * fixed seed; the expected final counts are computed here. With processing.guarantee=at_least_once
 * (the default) output may repeat, so the check is on the last value per key, which must converge
 * to at least the expected count: never less (nothing lost), and more only where at_least_once
 * allows it — a member that missed its session timeout (a slow machine) loses its task with
 * state updates past its last commit, and the new owner counts those records again; such
 * over-counts are reported, not failed. With STREAMS_PROCESSING_GUARANTEE=exactly_once_v2 (Streams'
 * transactions) the outputs are read with read_committed and must also hold every count update
 * exactly once: per key, the values 1, 2, … up to its count, in order, none repeated or skipped.
 *
 * <p>Phases: produce the first part of the input, run the app until the outputs converge on it,
 * produce a second part and close the app (leaving the group) at once, mid-stream; produce a third
 * part while it is down; start it again with an empty state dir (so both stores are restored from
 * their changelogs) and produce the rest while it runs; the outputs must converge to the counts of
 * the whole input. Also checks the internal topics' records and cleanup policies and that Streams
 * purged consumed repartition records (DeleteRecords). Prints PASS/FAIL lines like the other client-matrix
 * scripts and exits non-zero on any failure. Usage: StreamsTest BOOTSTRAP. Env: STREAMS_WAIT_S
 * (bound on each wait, default 60), STREAMS_THREADS (stream threads, default 2),
 * STREAMS_GROUP_PROTOCOL (Streams' group.protocol: classic, the default, or streams, KIP-1071).
 */
public final class StreamsTest {
    private static final int PARTITIONS = 3;
    private static final int LINES = 600;
    private static final int EVENTS = 900;
    private static final Duration WINDOW = Duration.ofSeconds(10);
    private static final Duration WAIT = Duration.ofSeconds(envInt("STREAMS_WAIT_S", 60));
    private static final String[] VOCABULARY = ("broker partition offset segment replica leader "
            + "follower consumer producer group commit fetch batch record header key value topic "
            + "stream table window store changelog repartition sluice kafka ring uring core shard "
            + "quorum raft epoch fence lag lead throughput latency flush sync index").split(" ");
    private static int failures = 0;

    private static int envInt(String name, int dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : Integer.parseInt(v);
    }

    /** processing.guarantee=exactly_once_v2 (STREAMS_PROCESSING_GUARANTEE), else at_least_once. */
    private static final boolean EOS = "exactly_once_v2".equals(System.getenv("STREAMS_PROCESSING_GUARANTEE"));

    private static void check(String scenario, boolean ok, String detail) {
        System.out.println((ok ? "PASS" : "FAIL") + (EOS ? " kafka-streams-eos " : " kafka-streams ") + scenario
                + (ok ? (detail.isEmpty() ? "" : " (" + detail + ")") : ": " + detail));
        System.out.flush();
        if (!ok) {
            failures++;
        }
    }

    private static void info(String msg) {
        System.out.println("  " + msg);
        System.out.flush();
    }

    /** The names of one run: fresh topics and application id. */
    private record Names(String appId, String text, String events, String wordsOut, String windowsOut) {
        static Names fresh() {
            String run = UUID.randomUUID().toString().substring(0, 8);
            return new Names("streams-matrix-" + run, "streams-text-" + run, "streams-events-" + run,
                    "streams-word-counts-" + run, "streams-window-counts-" + run);
        }

        List<String> internalTopics() {
            return List.of(appId + "-words-repartition", appId + "-word-counts-changelog",
                    appId + "-window-counts-changelog");
        }
    }

    static Topology topology(Names n, Properties config) {
        StreamsBuilder b = new StreamsBuilder(new TopologyConfig(new StreamsConfig(config)));
        // (a) word count: re-keyed by word (repartition topic "words"), counted in "word-counts".
        b.stream(n.text(), Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\W+")))
                .filter((k, word) -> !word.isEmpty())
                .groupBy((k, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("word-counts")
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
                .toStream()
                .to(n.wordsOut(), Produced.with(Serdes.String(), Serdes.Long()));
        // (b) count per key in tumbling windows, keyed "KEY@WINDOW_START" in the output. The grace
        // is long: events come a little out of order and none may be dropped.
        b.stream(n.events(), Consumed.with(Serdes.String(), Serdes.String()))
                .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
                .windowedBy(TimeWindows.ofSizeAndGrace(WINDOW, Duration.ofHours(6)))
                .count(Materialized.<String, Long, WindowStore<Bytes, byte[]>>as("window-counts")
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long())
                        .withRetention(Duration.ofDays(1)))
                .toStream((wk, count) -> wk.key() + "@" + wk.window().start())
                .to(n.windowsOut(), Produced.with(Serdes.String(), Serdes.Long()));
        return b.build();
    }

    /** The whole input, in produce order: text lines and events, each with its timestamp. */
    static List<ProducerRecord<String, String>> input(Names n, long base) {
        Random rnd = new Random(16);
        List<ProducerRecord<String, String>> text = new ArrayList<>();
        for (int i = 0; i < LINES; i++) {
            int words = 1 + rnd.nextInt(8);
            StringBuilder line = new StringBuilder();
            for (int w = 0; w < words; w++) {
                String word = VOCABULARY[rnd.nextInt(VOCABULARY.length)];
                // Some capitals and punctuation, which the app folds and splits away.
                line.append(rnd.nextInt(5) == 0 ? word.toUpperCase(Locale.ROOT) : word)
                        .append(rnd.nextInt(6) == 0 ? ", " : " ");
            }
            text.add(new ProducerRecord<>(n.text(), null, base + i * 100L, "line-" + i, line.toString()));
        }
        List<ProducerRecord<String, String>> events = new ArrayList<>();
        for (int i = 0; i < EVENTS; i++) {
            String user = "user-" + rnd.nextInt(12);
            // About 250 ms apart, up to 3 s out of order.
            long ts = base + i * 250L + rnd.nextInt(3000);
            events.add(new ProducerRecord<>(n.events(), null, ts, user, "event-" + i));
        }
        // Interleave, so every slice of the input has both kinds.
        List<ProducerRecord<String, String>> all = new ArrayList<>();
        int t = 0;
        int e = 0;
        while (t < text.size() || e < events.size()) {
            if (t < text.size() && (e >= events.size() || t * EVENTS <= e * LINES)) {
                all.add(text.get(t++));
            } else {
                all.add(events.get(e++));
            }
        }
        return all;
    }

    static Map<String, Long> expectedWords(Names n, List<ProducerRecord<String, String>> records) {
        Map<String, Long> out = new HashMap<>();
        for (ProducerRecord<String, String> r : records) {
            if (r.topic().equals(n.text())) {
                for (String w : r.value().toLowerCase(Locale.ROOT).split("\\W+")) {
                    if (!w.isEmpty()) {
                        out.merge(w, 1L, Long::sum);
                    }
                }
            }
        }
        return out;
    }

    static Map<String, Long> expectedWindows(Names n, List<ProducerRecord<String, String>> records) {
        Map<String, Long> out = new HashMap<>();
        long size = WINDOW.toMillis();
        for (ProducerRecord<String, String> r : records) {
            if (r.topic().equals(n.events())) {
                long start = r.timestamp() - r.timestamp() % size;
                out.merge(r.key() + "@" + start, 1L, Long::sum);
            }
        }
        return out;
    }

    /** Reads the output topics from the start and keeps the last value per key. */
    static final class Outputs implements AutoCloseable {
        final KafkaConsumer<String, Long> consumer;
        final Map<String, Map<String, Long>> latest = new HashMap<>();
        /** Per topic and key, every value read, in order. */
        final Map<String, Map<String, List<Long>>> history = new HashMap<>();
        long records = 0;

        Outputs(String bootstrap, List<String> topics) {
            Properties c = new Properties();
            c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
            c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, EOS ? "read_committed" : "read_uncommitted");
            consumer = new KafkaConsumer<>(c);
            List<TopicPartition> tps = new ArrayList<>();
            for (String t : topics) {
                latest.put(t, new HashMap<>());
                history.put(t, new HashMap<>());
                for (int p = 0; p < PARTITIONS; p++) {
                    tps.add(new TopicPartition(t, p));
                }
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
        }

        void poll() {
            for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(200))) {
                latest.get(r.topic()).put(r.key(), r.value());
                history.get(r.topic()).computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
                records++;
            }
        }

        @Override
        public void close() {
            consumer.close();
        }
    }

    /**
     * What differs between the expected counts and the last values read, or "" if nothing. With
     * at_least_once a count above the expected one is not a difference (see the class comment).
     */
    static String diff(Map<String, Long> want, Map<String, Long> got) {
        if (want.equals(got)) {
            return "";
        }
        List<String> missing = new ArrayList<>();
        List<String> wrong = new ArrayList<>();
        List<String> extra = new ArrayList<>();
        for (Map.Entry<String, Long> e : new TreeMap<>(want).entrySet()) {
            Long g = got.get(e.getKey());
            if (g == null) {
                missing.add(e.getKey());
            } else if (EOS ? !g.equals(e.getValue()) : g < e.getValue()) {
                wrong.add(e.getKey() + "=" + g + " (want " + e.getValue() + ")");
            }
        }
        for (String k : new TreeMap<>(got).keySet()) {
            if (!want.containsKey(k)) {
                extra.add(k + "=" + got.get(k));
            }
        }
        if (missing.isEmpty() && wrong.isEmpty() && extra.isEmpty()) {
            return "";
        }
        return want.size() + " keys expected; missing " + missing.size() + " " + head(missing)
                + "; wrong " + wrong.size() + " " + head(wrong) + "; unexpected " + extra.size() + " "
                + head(extra);
    }

    /** Keys whose last value is above the expected count (at_least_once reprocessing). */
    static long overCounted(Map<String, Long> want, Map<String, Long> got) {
        return want.entrySet().stream()
                .filter(e -> got.getOrDefault(e.getKey(), 0L) > e.getValue())
                .count();
    }

    private static String head(List<String> xs) {
        return xs.subList(0, Math.min(5, xs.size())).toString();
    }

    /** Polls the outputs until both converge to the expected counts or WAIT passes. */
    static void awaitCounts(String phase, Names n, Outputs out, Map<String, Long> words,
            Map<String, Long> windows, AtomicReference<Throwable> crashed) {
        long start = System.nanoTime();
        long deadline = start + WAIT.toNanos();
        String dw = "output not read";
        String dt = "output not read";
        while (System.nanoTime() < deadline && crashed.get() == null) {
            out.poll();
            dw = diff(words, out.latest.get(n.wordsOut()));
            dt = diff(windows, out.latest.get(n.windowsOut()));
            if (dw.isEmpty() && dt.isEmpty()) {
                break;
            }
        }
        long ms = (System.nanoTime() - start) / 1_000_000;
        String crash = crashed.get() == null ? "" : "; the app failed: " + crashed.get();
        long ow = overCounted(words, out.latest.get(n.wordsOut()));
        long ot = overCounted(windows, out.latest.get(n.windowsOut()));
        check(phase + "-word-count", dw.isEmpty() && crashed.get() == null,
                dw.isEmpty() ? words.size() + " words after " + ms + " ms, " + ow + " over-counted"
                        : dw + crash);
        check(phase + "-windowed-count", dt.isEmpty() && crashed.get() == null,
                dt.isEmpty() ? windows.size() + " windows after " + ms + " ms, " + ot + " over-counted"
                        : dt + crash);
    }

    static KafkaStreams startApp(String bootstrap, Names n, Path stateDir, AtomicReference<Throwable> crashed)
            throws InterruptedException {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, n.appId());
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
                EOS ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.toString(envInt("STREAMS_THREADS", 2)));
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "500");
        String protocol = System.getenv("STREAMS_GROUP_PROTOCOL");
        if (protocol != null && !protocol.isEmpty()) {
            p.put(StreamsConfig.GROUP_PROTOCOL_CONFIG, protocol);
        }
        // Purge consumed repartition records (DeleteRecords) soon after each commit, not every 30 s.
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, "500");
        // No record cache: every update goes to the changelog and the output at once.
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
        // Only silences a warning about future defaults (there is no global store here).
        p.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_GLOBAL_ENABLED_CONFIG, "true");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "10000");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "1000");
        KafkaStreams app = new KafkaStreams(topology(n, p), p);
        app.setUncaughtExceptionHandler(e -> {
            crashed.compareAndSet(null, e);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        long start = System.nanoTime();
        app.start();
        long deadline = start + WAIT.toNanos();
        while (app.state() != KafkaStreams.State.RUNNING && System.nanoTime() < deadline
                && crashed.get() == null && app.state() != KafkaStreams.State.ERROR) {
            Thread.sleep(50);
        }
        info("app " + n.appId() + " " + app.state() + " after " + (System.nanoTime() - start) / 1_000_000
                + " ms (state dir " + stateDir + ")");
        return app;
    }

    private static String crashMsg(AtomicReference<Throwable> crashed) {
        return crashed.get() == null ? "" : "; the app failed: " + crashed.get();
    }

    static boolean stopApp(KafkaStreams app) {
        return app.close(CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                .withTimeout(WAIT));
    }

    static void produce(String bootstrap, List<ProducerRecord<String, String>> records) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
            for (ProducerRecord<String, String> r : records) {
                sent.add(producer.send(r));
            }
            producer.flush();
            for (java.util.concurrent.Future<?> f : sent) {
                f.get();
            }
        }
    }

    /** The cleanup policies Streams gave its internal topics, as the broker describes them. */
    static void checkInternalConfigs(Properties common, Names n) throws Exception {
        Map<String, String> want = Map.of(n.appId() + "-words-repartition", "delete",
                n.appId() + "-word-counts-changelog", "compact",
                n.appId() + "-window-counts-changelog", "compact,delete");
        Map<String, String> got = new TreeMap<>();
        try (Admin admin = Admin.create(common)) {
            List<ConfigResource> rs = want.keySet().stream()
                    .map(t -> new ConfigResource(ConfigResource.Type.TOPIC, t)).toList();
            admin.describeConfigs(rs).all().get().forEach((r, cfg) -> {
                ConfigEntry e = cfg.get(TopicConfig.CLEANUP_POLICY_CONFIG);
                got.put(r.name(), e == null ? null : e.value());
            });
        }
        boolean ok = want.entrySet().stream().allMatch(e -> {
            String v = got.get(e.getKey());
            return v != null && Set.of(v.split(",")).equals(Set.of(e.getValue().split(",")));
        });
        check("internal-topic-configs", ok, ok ? "" : "cleanup.policy " + got + ", want " + want);
    }

    /** Streams deletes consumed repartition records (DeleteRecords); the log start moves up. */
    static void awaitPurge(Properties common, Names n) throws Exception {
        String topic = n.appId() + "-words-repartition";
        long start = System.nanoTime();
        long deadline = start + WAIT.toNanos();
        long earliest = 0;
        try (Admin admin = Admin.create(common)) {
            Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
            for (int p = 0; p < PARTITIONS; p++) {
                specs.put(new TopicPartition(topic, p), OffsetSpec.earliest());
            }
            while (System.nanoTime() < deadline) {
                earliest = admin.listOffsets(specs).all().get().values().stream()
                        .mapToLong(r -> r.offset()).sum();
                if (earliest > 0) {
                    break;
                }
                Thread.sleep(200);
            }
        }
        long ms = (System.nanoTime() - start) / 1_000_000;
        check("repartition-purged", earliest > 0, earliest > 0
                ? "log start offsets add up to " + earliest + " after " + ms + " ms"
                : "no record deleted from " + topic + " within " + WAIT);
    }

    static void deleteTree(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(q -> q.toFile().delete());
        } catch (IOException e) {
            info("could not remove " + dir + ": " + e);
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        Names n = Names.fresh();
        Properties common = new Properties();
        common.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        common.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(Stream.of(n.text(), n.events(), n.wordsOut(), n.windowsOut())
                    .map(t -> new NewTopic(t, PARTITIONS, (short) 1)).toList()).all().get();
        }
        // Timestamps an hour old: inside every retention, and whole windows.
        long base = System.currentTimeMillis() / 60_000 * 60_000 - 3_600_000;
        List<ProducerRecord<String, String>> all = input(n, base);
        int n1 = all.size() * 3 / 10;
        int n2 = all.size() / 2;
        int n3 = all.size() * 3 / 4;
        List<ProducerRecord<String, String>> part1 = all.subList(0, n1);
        List<ProducerRecord<String, String>> part2 = all.subList(n1, n2);
        List<ProducerRecord<String, String>> part3 = all.subList(n2, n3);
        List<ProducerRecord<String, String>> part4 = all.subList(n3, all.size());
        info("app " + n.appId() + ": " + LINES + " lines and " + EVENTS + " events in four parts of "
                + part1.size() + ", " + part2.size() + ", " + part3.size() + ", " + part4.size() + " records");

        AtomicReference<Throwable> crashed = new AtomicReference<>();
        Path state1 = Files.createTempDirectory("sluice-streams-");
        Path state2 = Files.createTempDirectory("sluice-streams-");
        try (Outputs out = new Outputs(bootstrap, List.of(n.wordsOut(), n.windowsOut()))) {
            // First run: part 1 is there before the app starts, and its counts must come out.
            produce(bootstrap, part1);
            KafkaStreams app = startApp(bootstrap, n, state1, crashed);
            check("first-start", app.state() == KafkaStreams.State.RUNNING, "state " + app.state() + crashMsg(crashed));
            awaitCounts("first-run", n, out, expectedWords(n, part1), expectedWindows(n, part1), crashed);
            // Part 2 arrives and the app is closed (leaving the group) without waiting for it:
            // whatever it had not processed yet must be processed after the restart, once.
            produce(bootstrap, part2);
            boolean closed = stopApp(app);
            check("close-mid-stream", closed, closed ? "" : "not closed within " + WAIT);
            for (int i = 0; i < 5; i++) {
                out.poll();
            }
            List<ProducerRecord<String, String>> upTo2 = all.subList(0, n2);
            boolean allOf2 = diff(expectedWords(n, upTo2), out.latest.get(n.wordsOut())).isEmpty()
                    && diff(expectedWindows(n, upTo2), out.latest.get(n.windowsOut())).isEmpty();
            info("at the close, part 2 was " + (allOf2 ? "wholly" : "not yet wholly") + " processed");

            // Part 3 while the app is down; a fresh state dir, so the stores come back from their
            // changelogs; part 4 while it runs again.
            produce(bootstrap, part3);
            app = startApp(bootstrap, n, state2, crashed);
            check("restart", app.state() == KafkaStreams.State.RUNNING, "state " + app.state() + crashMsg(crashed));
            produce(bootstrap, part4);
            awaitCounts("after-restart", n, out, expectedWords(n, all), expectedWindows(n, all), crashed);
            info(out.records + " output records read");
            if (EOS) {
                // Exactly once: every count update once, in order (1, 2, …, n per key).
                List<String> bad = new ArrayList<>();
                for (String t : List.of(n.wordsOut(), n.windowsOut())) {
                    for (Map.Entry<String, List<Long>> e : new TreeMap<>(out.history.get(t)).entrySet()) {
                        List<Long> vs = e.getValue();
                        for (int i = 0; i < vs.size(); i++) {
                            if (vs.get(i) != i + 1) {
                                bad.add(t + "/" + e.getKey() + ": " + vs);
                                break;
                            }
                        }
                    }
                }
                check("exactly-once-updates", bad.isEmpty(),
                        bad.size() + " keys with a repeated or missing update, e.g. "
                                + bad.subList(0, Math.min(3, bad.size())));
            }

            // The internal topics exist and were written.
            try (Admin admin = Admin.create(common)) {
                Set<String> topics = admin.listTopics().names().get();
                List<String> missing = n.internalTopics().stream().filter(t -> !topics.contains(t)).toList();
                Map<String, Long> written = new TreeMap<>();
                if (missing.isEmpty()) {
                    Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
                    for (var d : admin.describeTopics(n.internalTopics()).allTopicNames().get().values()) {
                        d.partitions().forEach(pi -> specs.put(new TopicPartition(d.name(), pi.partition()),
                                OffsetSpec.latest()));
                    }
                    admin.listOffsets(specs).all().get().forEach((tp, r) ->
                            written.merge(tp.topic().substring(n.appId().length() + 1), r.offset(), Long::sum));
                }
                check("internal-topics", missing.isEmpty() && written.values().stream().allMatch(v -> v > 0),
                        missing.isEmpty() ? "records written " + written : "missing " + missing);
            }
            checkInternalConfigs(common, n);
            awaitPurge(common, n);
            closed = stopApp(app);
            check("final-close", closed, closed ? "" : "not closed within " + WAIT);
        } finally {
            deleteTree(state1);
            deleteTree(state2);
        }
        if (crashed.get() != null) {
            check("no-stream-thread-failure", false, crashed.get().toString());
        }
        System.exit(failures == 0 ? 0 : 1);
    }
}
