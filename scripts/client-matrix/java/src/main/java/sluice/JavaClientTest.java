package sluice;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.FeatureUpdate;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.SupportedVersionRange;
import org.apache.kafka.clients.admin.UpdateFeaturesOptions;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.quota.ClientQuotaFilterComponent;
import org.apache.kafka.common.utils.Utils;

/**
 * The Java client (Apache Kafka's kafka-clients) against a broker: admin, an idempotent keyed
 * producer with acks=all, a consumer group that commits, and transactions (commit, abort,
 * offsets sent to the transaction, read_committed and read_uncommitted consumers, a fenced
 * zombie, the Admin API's transaction listing), and client quotas (set and read with the Admin
 * API; a producer over its producer_byte_rate sees throttle times, on the plain listener only,
 * where no ACLs apply). Prints PASS/FAIL lines like the
 * other client-matrix scripts and exits non-zero on any failure. Usage: JavaClientTest BOOTSTRAP
 */
public final class JavaClientTest {
    private static final int PARTITIONS = 3;
    private static final int RECORDS = 300;
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static int failures = 0;

    private static void check(String scenario, boolean ok, String detail) {
        System.out.println((ok ? "PASS" : "FAIL") + " java " + scenario + (ok ? "" : ": " + detail));
        if (!ok) {
            failures++;
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        // MATRIX_TOPIC_PREFIX: e.g. mtls-java, for topics the broker's ACLs reserve to a principal.
        String prefix = System.getenv().getOrDefault("MATRIX_TOPIC_PREFIX", "java");
        String topic = prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
        String group = topic + "-group";

        Properties common = new Properties();
        common.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        common.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        // Extra client settings (e.g. SASL) from a properties file, for every client below.
        String extra = System.getenv("MATRIX_JAVA_CLIENT_PROPS");
        if (extra != null && !extra.isEmpty()) {
            try (java.io.FileReader r = new java.io.FileReader(extra)) {
                common.load(r);
            }
        }

        // admin: create the topic and describe it.
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get();
            TopicDescription d = admin.describeTopics(Set.of(topic)).allTopicNames().get().get(topic);
            check("admin-create-describe", d.partitions().size() == PARTITIONS,
                    "partitions " + d.partitions().size());
        }

        // produce: keyed, idempotent, acks=all; keys land where the Java partitioner puts them.
        Properties p = new Properties();
        p.putAll(common);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        Map<Integer, Long> endOffsets = new HashMap<>();
        boolean placed = true;
        String misplaced = "";
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < RECORDS; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, "key-" + i, "value-" + i)));
            }
            producer.flush();
            for (int i = 0; i < RECORDS; i++) {
                RecordMetadata m = sent.get(i).get();
                int want = Utils.toPositive(Utils.murmur2(("key-" + i).getBytes())) % PARTITIONS;
                if (m.partition() != want) {
                    placed = false;
                    misplaced = "key-" + i + " in " + m.partition() + ", expected " + want;
                }
                endOffsets.merge(m.partition(), m.offset() + 1, Math::max);
            }
        }
        long total = endOffsets.values().stream().mapToLong(Long::longValue).sum();
        check("produce-idempotent-acks-all", total == RECORDS, "offsets add up to " + total);
        check("produce-key-partitioning", placed, misplaced);

        // consume: a group subscribes, reads everything in per-partition order, commits.
        Properties c = new Properties();
        c.putAll(common);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        Map<Integer, Long> lastOffset = new HashMap<>();
        int received = 0;
        boolean ordered = true;
        boolean valuesMatch = true;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (received < RECORDS && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    received++;
                    Long prev = lastOffset.put(r.partition(), r.offset());
                    if (prev != null && r.offset() <= prev) {
                        ordered = false;
                    }
                    if (!r.value().equals("value-" + r.key().substring(4))) {
                        valuesMatch = false;
                    }
                }
            }
            check("consume-group", received == RECORDS && valuesMatch,
                    "received " + received + ", values match " + valuesMatch);
            check("consume-order", ordered, "offsets went backwards");
            consumer.commitSync(WAIT);
            Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(
                    Set.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1),
                            new TopicPartition(topic, 2)), WAIT);
            boolean atEnd = true;
            for (int part = 0; part < PARTITIONS; part++) {
                OffsetAndMetadata o = committed.get(new TopicPartition(topic, part));
                long want = endOffsets.getOrDefault(part, 0L);
                if (want > 0 && (o == null || o.offset() != want)) {
                    atEnd = false;
                }
            }
            check("consume-commit", atEnd, "committed " + committed + ", ends " + endOffsets);
        }

        transactions(common, topic);
        if (extra == null || extra.isEmpty()) {
            quotas(common, topic);
        }
        String longSession = System.getenv("MATRIX_LONG_SESSION_MS");
        if (longSession != null && !longSession.isEmpty()) {
            longSession(p, topic, Long.parseLong(longSession));
        }

        // admin: the features (transaction.version supported and finalized), and an update to
        // the finalized level validated only, as kafka-features.sh --dry-run sends it.
        try (Admin admin = Admin.create(common)) {
            FeatureMetadata fm = admin.describeFeatures().featureMetadata().get();
            SupportedVersionRange sv = fm.supportedFeatures().get("transaction.version");
            FinalizedVersionRange fv = fm.finalizedFeatures().get("transaction.version");
            short level = fv == null ? 0 : fv.maxVersionLevel();
            boolean ok = sv != null && sv.minVersion() == 0 && sv.maxVersion() >= 2;
            String failure = "";
            try {
                admin.updateFeatures(
                        Map.of("transaction.version",
                                new FeatureUpdate(level, FeatureUpdate.UpgradeType.UPGRADE)),
                        new UpdateFeaturesOptions().validateOnly(true)).all().get();
            } catch (Exception e) {
                ok = false;
                failure = e.toString();
            }
            check("admin-features", ok, "supported " + sv + ", finalized " + level + " " + failure);
        }

        // admin: the group's committed offsets, as kafka-consumer-groups.sh reads them.
        try (Admin admin = Admin.create(common)) {
            Map<TopicPartition, OffsetAndMetadata> offsets =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            long sum = offsets.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
            check("admin-group-offsets", sum == RECORDS, "committed offsets add up to " + sum);
            admin.deleteTopics(List.of(topic, topic + "-txn")).all().get();
            check("admin-delete-topic", true, "");
        }
        System.exit(failures == 0 ? 0 : 1);
    }

    /**
     * One producer sending a record every 200 ms for `millis` (set it to several times the
     * broker's connections.max.reauth.ms): every send is acknowledged, so the client renewed
     * its SASL session on its connection (KIP-368) or reconnected without losing a record; the
     * test around it reads from the broker's metrics which of the two happened.
     */
    private static void longSession(Properties producerProps, String topic, long millis) throws Exception {
        int sent = 0;
        int acked = 0;
        String failure = "";
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps)) {
            long end = System.nanoTime() + millis * 1_000_000L;
            while (System.nanoTime() < end) {
                try {
                    producer.send(new ProducerRecord<>(topic, "session", "s-" + sent)).get();
                    acked++;
                } catch (Exception e) {
                    failure = e.toString();
                }
                sent++;
                Thread.sleep(200);
            }
        }
        check("sasl-long-session", sent > 0 && acked == sent,
                acked + " of " + sent + " acknowledged " + failure);
    }

    /**
     * DescribeClientQuotas until its answer satisfies `ok`, for at most 10 s (a quota change
     * reaches the broker that answers a moment after AlterClientQuotas returns — in Apache
     * Kafka it travels through the metadata log); the last answer.
     */
    private static Map<ClientQuotaEntity, Map<String, Double>> quotasOnceThey(Admin admin,
            ClientQuotaFilter filter,
            java.util.function.Predicate<Map<ClientQuotaEntity, Map<String, Double>>> ok) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (true) {
            Map<ClientQuotaEntity, Map<String, Double>> got = admin.describeClientQuotas(filter).entities().get();
            if (ok.test(got) || System.nanoTime() > deadline) {
                return got;
            }
            Thread.sleep(100);
        }
    }

    /** A client id's producer_byte_rate set and read through the Admin API, then produced over. */
    private static void quotas(Properties common, String topic) throws Exception {
        String clientId = topic + "-throttled";
        ClientQuotaEntity entity = new ClientQuotaEntity(Map.of(ClientQuotaEntity.CLIENT_ID, clientId));
        double rate = 100_000.0;
        try (Admin admin = Admin.create(common)) {
            admin.alterClientQuotas(List.of(new ClientQuotaAlteration(entity,
                    List.of(new ClientQuotaAlteration.Op("producer_byte_rate", rate))))).all().get();
            ClientQuotaFilter only = ClientQuotaFilter.containsOnly(List.of(
                    ClientQuotaFilterComponent.ofEntity(ClientQuotaEntity.CLIENT_ID, clientId)));
            Map<ClientQuotaEntity, Map<String, Double>> got = quotasOnceThey(admin, only,
                    q -> q.containsKey(entity) && Double.valueOf(rate).equals(q.get(entity).get("producer_byte_rate")));
            Map<String, Double> values = got.get(entity);
            check("admin-client-quotas", values != null && values.get("producer_byte_rate") == rate,
                    "described " + got);
        }
        // 1.5 MB against 100 kB/s: the first ten seconds' worth goes at once, then the broker
        // throttles and the producer waits as the responses' throttle_time_ms say.
        Properties p = new Properties();
        p.putAll(common);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, clientId);
        p.put(ProducerConfig.ACKS_CONFIG, "1");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        String value = "q".repeat(10_000);
        int n = 150;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, value)));
            }
            producer.flush();
            int acked = 0;
            for (Future<RecordMetadata> f : sent) {
                f.get();
                acked++;
            }
            double throttleMax = producer.metrics().entrySet().stream()
                    .filter(e -> e.getKey().name().equals("produce-throttle-time-max")
                            && e.getKey().group().equals("producer-metrics"))
                    .mapToDouble(e -> ((Number) e.getValue().metricValue()).doubleValue())
                    .filter(v -> !Double.isNaN(v))
                    .max().orElse(0.0);
            check("produce-throttled-by-quota", acked == n && throttleMax > 0,
                    "acked " + acked + "/" + n + ", produce-throttle-time-max " + throttleMax);
        }
        try (Admin admin = Admin.create(common)) {
            admin.alterClientQuotas(List.of(new ClientQuotaAlteration(entity,
                    List.of(new ClientQuotaAlteration.Op("producer_byte_rate", null))))).all().get();
            Map<ClientQuotaEntity, Map<String, Double>> got = quotasOnceThey(admin, ClientQuotaFilter.all(),
                    q -> !q.containsKey(entity));
            check("admin-client-quotas-removed", !got.containsKey(entity), "still " + got);
        }
    }

    private static List<String> readAll(Properties common, String topic, String isolation, int want) {
        Properties c = new Properties();
        c.putAll(common);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, topic + "-" + isolation);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        List<String> got = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (got.size() < want && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    got.add(r.value());
                }
            }
            // A little longer: nothing more may come.
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(1000))) {
                got.add(r.value());
            }
        }
        return got;
    }

    private static void transactions(Properties common, String base) throws Exception {
        String topic = base + "-txn";
        String txnId = base + "-tx";
        String group = base + "-txgroup";
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get();
        }
        Properties p = new Properties();
        p.putAll(common);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            producer.beginTransaction();
            for (int i = 0; i < 50; i++) {
                producer.send(new ProducerRecord<>(topic, "k" + i, "c-" + i));
            }
            producer.commitTransaction();
            producer.beginTransaction();
            for (int i = 0; i < 30; i++) {
                producer.send(new ProducerRecord<>(topic, "k" + i, "a-" + i));
            }
            producer.flush();
            producer.abortTransaction();
            producer.beginTransaction();
            for (int i = 0; i < 20; i++) {
                producer.send(new ProducerRecord<>(topic, "k" + i, "d-" + i));
            }
            producer.sendOffsetsToTransaction(
                    Map.of(new TopicPartition(base, 0), new OffsetAndMetadata(5)),
                    new ConsumerGroupMetadata(group));
            producer.commitTransaction();
            check("txn-commit-abort", true, "");
            // Transaction version 2 (KIP-890 part 2) when the broker finalizes it: the client
            // sent no AddPartitionsToTxn, and each of the three EndTxn bumped the epoch.
            try (Admin admin = Admin.create(common)) {
                FinalizedVersionRange tv = admin.describeFeatures().featureMetadata().get()
                        .finalizedFeatures().get("transaction.version");
                short level = tv == null ? 0 : tv.maxVersionLevel();
                TransactionDescription d =
                        admin.describeTransactions(List.of(txnId)).all().get().get(txnId);
                int want = level >= 2 ? 3 : 0;
                check("txn-version-2", level == 2 && d.producerEpoch() == want,
                        "transaction.version " + level + ", epoch " + d.producerEpoch()
                                + " after three transactions");
            }

            // A second instance with the same transactional id fences this one.
            try (KafkaProducer<String, String> fresh = new KafkaProducer<>(p)) {
                fresh.initTransactions();
                // The zombie's next transaction must fail (ProducerFencedException with the
                // classic protocol; Apache Kafka 4's transaction version 2 reports it through
                // other exceptions), and its record must never be read (txn-read-committed).
                String fenced = null;
                try {
                    producer.beginTransaction();
                    producer.send(new ProducerRecord<>(topic, "z", "zombie")).get();
                    producer.commitTransaction();
                } catch (Exception e) {
                    Throwable t = e instanceof java.util.concurrent.ExecutionException ? e.getCause() : e;
                    fenced = t.getClass().getSimpleName();
                }
                check("txn-zombie-fenced", fenced != null, "the old producer committed");
            }
        } catch (ProducerFencedException e) {
            // close() of the fenced producer may throw it again.
        }
        List<String> committed = readAll(common, topic, "read_committed", 70);
        long aborted = committed.stream().filter(v -> v.startsWith("a-") || v.equals("zombie")).count();
        check("txn-read-committed", committed.size() == 70 && aborted == 0,
                "read " + committed.size() + " records, " + aborted + " of them aborted");
        List<String> all = readAll(common, topic, "read_uncommitted", 100);
        check("txn-read-uncommitted", all.size() == 100, "read " + all.size() + " records");
        try (Admin admin = Admin.create(common)) {
            Map<TopicPartition, OffsetAndMetadata> offsets =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            OffsetAndMetadata o = offsets.get(new TopicPartition(base, 0));
            check("txn-send-offsets", o != null && o.offset() == 5, "committed " + offsets);
            boolean listed = false;
            for (TransactionListing t : admin.listTransactions().all().get()) {
                listed |= t.transactionalId().equals(txnId);
            }
            TransactionDescription d = admin.describeTransactions(List.of(txnId)).all().get().get(txnId);
            check("txn-admin-list-describe", listed && d != null && d.producerId() >= 0,
                    "listed " + listed + ", described " + d);
        }
    }
}
