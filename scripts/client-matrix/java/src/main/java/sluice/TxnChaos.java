package sluice;

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A consume-transform-produce loop on the Java client's transactions (transaction version 2
 * where the broker finalizes it), for tests that SIGKILL brokers under it
 * (tests/transactions.rs): reads IN with read_committed, writes "t-" + value to the same
 * partition of OUT and sends the consumed offsets to the transaction, in transactions of at
 * most 5 records, every fourth one aborted on purpose (the consumer rewound to the group's
 * committed offsets). On an error the transaction is aborted and the consumer rewound; on a
 * fatal one (fenced, or a commit that timed out and so may or may not have happened) the
 * producer and consumer are closed and made anew, as Kafka's own exactly-once example does.
 * Exits 0 once the group's committed offsets of IN add up to EXPECTED, 1 at DEADLINE_S, and
 * prints a summary (the test paces its SIGKILLs on the group's offsets, read by itself).
 *
 * <p>Usage: TxnChaos BOOTSTRAP IN OUT GROUP TRANSACTIONAL_ID EXPECTED DEADLINE_S PAUSE_MS
 */
public final class TxnChaos {
    private TxnChaos() {}

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String in = args[1];
        String out = args[2];
        String group = args[3];
        String txnId = args[4];
        long expected = Long.parseLong(args[5]);
        long deadline = System.nanoTime() + Duration.ofSeconds(Long.parseLong(args[6])).toNanos();
        long pauseMs = Long.parseLong(args[7]);

        KafkaConsumer<String, String> consumer = consumer(bootstrap, in, group);
        KafkaProducer<String, String> producer = producer(bootstrap, txnId, deadline);
        long steps = 0;
        long aborted = 0;
        long resets = 0;
        long committed = 0;
        while (System.nanoTime() < deadline) {
            ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
            if (records.isEmpty()) {
                committed = committedTotal(consumer, in);
                if (committed >= expected) {
                    break;
                }
                continue;
            }
            boolean abortOnPurpose = (steps + 1) % 4 == 0;
            Exception fatal = null;
            try {
                producer.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    producer.send(new ProducerRecord<>(out, r.partition(), r.key(), "t-" + r.value()));
                    offsets.put(new TopicPartition(r.topic(), r.partition()),
                            new OffsetAndMetadata(r.offset() + 1));
                }
                producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                steps++;
                if (abortOnPurpose) {
                    producer.abortTransaction();
                    aborted++;
                    rewind(consumer);
                } else {
                    producer.commitTransaction();
                }
            } catch (ProducerFencedException | InvalidProducerEpochException | OutOfOrderSequenceException
                    | AuthorizationException | TimeoutException | IllegalStateException e) {
                fatal = e;
            } catch (KafkaException e) {
                System.out.println("abort after " + e);
                try {
                    producer.abortTransaction();
                    rewind(consumer);
                } catch (KafkaException | IllegalStateException again) {
                    fatal = again;
                }
            }
            if (fatal != null) {
                System.out.println("reset after " + fatal);
                resets++;
                producer.close(Duration.ofSeconds(5));
                consumer.close(Duration.ofSeconds(5));
                consumer = consumer(bootstrap, in, group);
                producer = producer(bootstrap, txnId, deadline);
            }
            if (pauseMs > 0) {
                Thread.sleep(pauseMs);
            }
        }
        committed = committedTotal(consumer, in);
        System.out.println("summary committed " + committed + " of " + expected + ", " + steps + " steps, "
                + aborted + " aborted, " + resets + " resets");
        producer.close(Duration.ofSeconds(5));
        consumer.close(Duration.ofSeconds(5));
        System.exit(committed >= expected ? 0 : 1);
    }

    private static KafkaConsumer<String, String> consumer(String bootstrap, String in, String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "5");
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        KafkaConsumer<String, String> c = new KafkaConsumer<>(p);
        c.subscribe(List.of(in));
        return c;
    }

    /** A transactional producer, initialised (retried until the deadline: brokers restart). */
    private static KafkaProducer<String, String> producer(String bootstrap, String txnId, long deadline) {
        while (true) {
            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
            p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
            p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
            p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000");
            p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            KafkaProducer<String, String> producer = new KafkaProducer<>(p);
            try {
                producer.initTransactions();
                return producer;
            } catch (KafkaException e) {
                System.out.println("initTransactions: " + e);
                producer.close(Duration.ofSeconds(5));
                if (System.nanoTime() > deadline) {
                    throw e;
                }
            }
        }
    }

    /** Seeks every assigned partition back to the group's committed offset (or the start). */
    private static void rewind(KafkaConsumer<String, String> consumer) {
        Set<TopicPartition> assigned = consumer.assignment();
        Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(assigned);
        for (TopicPartition tp : assigned) {
            OffsetAndMetadata o = committed.get(tp);
            if (o == null) {
                consumer.seekToBeginning(List.of(tp));
            } else {
                consumer.seek(tp, o.offset());
            }
        }
    }

    /** The group's committed offsets of every partition of IN, added up. */
    private static long committedTotal(KafkaConsumer<String, String> consumer, String in) {
        try {
            Set<TopicPartition> all = new java.util.HashSet<>();
            for (var info : consumer.partitionsFor(in)) {
                all.add(new TopicPartition(in, info.partition()));
            }
            long total = 0;
            for (OffsetAndMetadata o : consumer.committed(all).values()) {
                if (o != null) {
                    total += o.offset();
                }
            }
            return total;
        } catch (KafkaException e) {
            return -1;
        }
    }
}
