package caudal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/caudal-go/caudal"
)

// A checkpointer persists each step's record as it completes; after a
// crash, the run resumes from those records and no completed step runs
// again.
func ExampleWithCheckpointer() {
	var (
		mu      sync.Mutex
		records []caudal.Record // what a runner would write to its store
	)
	persist := caudal.CheckpointFunc(func(_ context.Context, rec caudal.Record) error {
		b, err := json.Marshal(rec) // encode before returning: rec shares the run's values
		if err != nil {
			return err
		}
		var saved caudal.Record
		if err := json.Unmarshal(b, &saved); err != nil {
			return err
		}
		mu.Lock()
		records = append(records, saved)
		mu.Unlock()
		return nil
	})

	calls := map[string]int{}
	step := func(name string, crash bool) caudal.Step {
		return caudal.AgentStep(name, caudal.AgentFunc(func(_ context.Context, in any) (caudal.Reply, error) {
			calls[name]++
			if crash && calls[name] == 1 {
				return caudal.Reply{}, errors.New("the machine went down")
			}
			return caudal.Reply{Output: fmt.Sprintf("%v→%s", in, name)}, nil
		}))
	}
	pipeline, err := caudal.Build(caudal.Seq("job", step("fetch", false), step("summarize", false), step("publish", true)))
	if err != nil {
		fmt.Println(err)
		return
	}
	ex, err := caudal.New(caudal.WithCheckpointer(persist))
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = ex.Execute(context.Background(), pipeline, "doc")
	fmt.Println("first run:", err != nil, "records:", len(records))

	// Recovery: a checkpoint is the records, the run's input and the
	// pipeline's fingerprint; it has no paused step, so no answer.
	checkpoint := &caudal.Snapshot{
		Version: caudal.SnapshotVersion, Fingerprint: pipeline.Fingerprint(), Input: "doc", Journal: records,
	}
	res, err := ex.Execute(context.Background(), pipeline, nil, caudal.WithResume(checkpoint, nil))
	fmt.Println(res.Output, err)
	fmt.Println("fetch", calls["fetch"], "summarize", calls["summarize"], "publish", calls["publish"])
	// Output:
	// first run: true records: 2
	// doc→fetch→summarize→publish <nil>
	// fetch 1 summarize 1 publish 2
}
