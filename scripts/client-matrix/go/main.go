// The Go clients of the client matrix against a broker: franz-go (kgo, kadm), sarama and
// segmentio/kafka-go.
// Prints PASS/FAIL lines like the other client-matrix scripts and exits non-zero on any failure.
// Usage: go-matrix BOOTSTRAP
package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"time"

	"github.com/IBM/sarama"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const records = 300

var failures = 0

func check(scenario string, ok bool, detail string) {
	if ok {
		fmt.Printf("PASS go %s\n", scenario)
	} else {
		fmt.Printf("FAIL go %s: %s\n", scenario, detail)
		failures++
	}
}

func franz(boot string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	topic := fmt.Sprintf("franz-%08x", rand.Uint32())
	group := topic + "-group"
	admin, err := kgo.NewClient(kgo.SeedBrokers(boot))
	if err != nil {
		check("franz-client", false, err.Error())
		return
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	resp, err := adm.CreateTopics(ctx, 3, 1, nil, topic)
	check("franz-create-topic", err == nil && resp[topic].Err == nil, fmt.Sprint(err, resp[topic].Err))

	// Idempotent (franz-go's default), acks=all, keyed.
	prod, err := kgo.NewClient(kgo.SeedBrokers(boot), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		check("franz-producer", false, err.Error())
		return
	}
	var batch []*kgo.Record
	for i := 0; i < records; i++ {
		batch = append(batch, &kgo.Record{Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte(fmt.Sprintf("value-%d", i))})
	}
	results := prod.ProduceSync(ctx, batch...)
	check("franz-produce", results.FirstErr() == nil, fmt.Sprint(results.FirstErr()))
	prod.Close()

	cons, err := kgo.NewClient(kgo.SeedBrokers(boot), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		check("franz-consumer", false, err.Error())
		return
	}
	got := 0
	last := map[int32]int64{}
	ordered := true
	for got < records && ctx.Err() == nil {
		fetches := cons.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) {
			got++
			if prev, ok := last[r.Partition]; ok && r.Offset <= prev {
				ordered = false
			}
			last[r.Partition] = r.Offset
		})
	}
	check("franz-consume-group", got == records && ordered, fmt.Sprintf("got %d, ordered %v", got, ordered))
	err = cons.CommitUncommittedOffsets(ctx)
	check("franz-commit", err == nil, fmt.Sprint(err))
	cons.Close()
	offsets, err := adm.FetchOffsets(ctx, group)
	var sum int64
	offsets.Each(func(o kadm.OffsetResponse) { sum += o.At })
	check("franz-group-offsets", err == nil && sum == records, fmt.Sprintf("%v, committed offsets add up to %d", err, sum))
	_, err = adm.DeleteTopics(ctx, topic)
	check("franz-delete-topic", err == nil, fmt.Sprint(err))
}

func saramaScenario(boot string) {
	topic := fmt.Sprintf("sarama-%08x", rand.Uint32())
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	admin, err := sarama.NewClusterAdmin([]string{boot}, cfg)
	if err != nil {
		check("sarama-admin", false, err.Error())
		return
	}
	defer admin.Close()
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false)
	check("sarama-create-topic", err == nil, fmt.Sprint(err))
	producer, err := sarama.NewSyncProducer([]string{boot}, cfg)
	if err != nil {
		check("sarama-producer", false, err.Error())
		return
	}
	perPartition := map[int32]int64{}
	okAll := true
	for i := 0; i < records; i++ {
		p, off, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("key-%d", i)), Value: sarama.StringEncoder(fmt.Sprintf("value-%d", i))})
		if err != nil {
			okAll = false
			break
		}
		if off+1 > perPartition[p] {
			perPartition[p] = off + 1
		}
	}
	producer.Close()
	var total int64
	for _, n := range perPartition {
		total += n
	}
	check("sarama-produce-idempotent", okAll && total == records, fmt.Sprintf("offsets add up to %d", total))
	consumer, err := sarama.NewConsumer([]string{boot}, cfg)
	if err != nil {
		check("sarama-consumer", false, err.Error())
		return
	}
	defer consumer.Close()
	got := 0
	for p, end := range perPartition {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			check("sarama-consume", false, err.Error())
			return
		}
		timeout := time.After(30 * time.Second)
	loop:
		for n := int64(0); n < end; n++ {
			select {
			case <-pc.Messages():
				got++
			case <-timeout:
				break loop
			}
		}
		pc.Close()
	}
	check("sarama-consume", got == records, fmt.Sprintf("got %d", got))
	err = admin.DeleteTopic(topic)
	check("sarama-delete-topic", err == nil, fmt.Sprint(err))
}

// segmentio/kafka-go: its Client for admin and offsets, a Writer (acks=all, keyed, the
// Java-compatible murmur2 partitioner; kafka-go has no idempotent producer), and a Reader in a
// consumer group that commits synchronously.
func kafkaGoScenario(boot string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	topic := fmt.Sprintf("kafkago-%08x", rand.Uint32())
	group := topic + "-group"
	client := &kafkago.Client{Addr: kafkago.TCP(boot), Timeout: 15 * time.Second}
	created, err := client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{
		Topics: []kafkago.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}},
	})
	if err == nil {
		err = created.Errors[topic]
	}
	check("kafka-go-create-topic", err == nil, fmt.Sprint(err))
	if err != nil {
		return
	}

	w := &kafkago.Writer{Addr: kafkago.TCP(boot), Topic: topic, Balancer: &kafkago.Murmur2Balancer{},
		RequiredAcks: kafkago.RequireAll, BatchTimeout: 10 * time.Millisecond, WriteTimeout: 15 * time.Second}
	var msgs []kafkago.Message
	for i := 0; i < records; i++ {
		msgs = append(msgs, kafkago.Message{Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte(fmt.Sprintf("value-%d", i))})
	}
	err = w.WriteMessages(ctx, msgs...)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	check("kafka-go-produce", err == nil, fmt.Sprint(err))

	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{boot}, GroupID: group, Topic: topic,
		StartOffset: kafkago.FirstOffset, MaxWait: 500 * time.Millisecond, CommitInterval: 0,
		HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second})
	got := 0
	last := map[int]int64{}
	keyPartition := map[string]int{}
	ordered, valuesMatch, keysStay := true, true, true
	var read []kafkago.Message
	for got < records && ctx.Err() == nil {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			break
		}
		got++
		read = append(read, m)
		if prev, ok := last[m.Partition]; ok && m.Offset <= prev {
			ordered = false
		}
		last[m.Partition] = m.Offset
		if string(m.Value) != "value-"+string(m.Key)[len("key-"):] {
			valuesMatch = false
		}
		if p, ok := keyPartition[string(m.Key)]; ok && p != m.Partition {
			keysStay = false
		}
		keyPartition[string(m.Key)] = m.Partition
	}
	check("kafka-go-consume-group", got == records && ordered && valuesMatch && keysStay,
		fmt.Sprintf("got %d, ordered %v, values match %v, keys in one partition %v", got, ordered, valuesMatch, keysStay))
	err = r.CommitMessages(ctx, read...)
	check("kafka-go-commit", err == nil, fmt.Sprint(err))
	if cerr := r.Close(); cerr != nil {
		check("kafka-go-reader-close", false, cerr.Error())
	}

	fetched, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2}}})
	var sum int64
	if err == nil {
		err = fetched.Error
		for _, p := range fetched.Topics[topic] {
			if p.Error != nil && err == nil {
				err = p.Error
			}
			if p.CommittedOffset > 0 {
				sum += p.CommittedOffset
			}
		}
	}
	check("kafka-go-group-offsets", err == nil && sum == records, fmt.Sprintf("%v, committed offsets add up to %d", err, sum))
	deleted, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: []string{topic}})
	if err == nil {
		err = deleted.Errors[topic]
	}
	check("kafka-go-delete-topic", err == nil, fmt.Sprint(err))
}

func main() {
	boot := os.Args[1]
	franz(boot)
	saramaScenario(boot)
	kafkaGoScenario(boot)
	if failures > 0 {
		os.Exit(1)
	}
}
