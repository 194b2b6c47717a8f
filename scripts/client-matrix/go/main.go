// The Go clients of the client matrix against a broker: franz-go (kgo, kadm) and sarama.
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

func main() {
	boot := os.Args[1]
	franz(boot)
	saramaScenario(boot)
	if failures > 0 {
		os.Exit(1)
	}
}
