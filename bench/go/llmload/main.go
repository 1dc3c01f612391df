// llmload: the asynq (Go) side of bench_llm_load. A real asynq v0.26.0 server whose handler sends
// each llm:chat task's messages to an OpenAI-compatible endpoint (the stub LLM) and reads the JSON
// answer, like our worker does, without storage. Prints JSON lines: {"event":"ready"} then
// {"event":"done",...} once n tasks were handled.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

type chatPayload struct {
	Model    string            `json:"model"`
	Messages []json.RawMessage `json:"messages"`
}

type answer struct {
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
}

func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func main() {
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	llmURL := flag.String("llm", "http://127.0.0.1:8999", "OpenAI-compatible base URL")
	concurrency := flag.Int("concurrency", 5000, "asynq worker concurrency")
	n := flag.Int64("n", 10000, "tasks to handle before exiting")
	maxCalls := flag.Int("max-calls", 0, "cap on provider calls in flight (0: the concurrency); a higher concurrency then holds prefetched tasks")
	flag.Parse()
	if *maxCalls <= 0 {
		*maxCalls = *concurrency
	}
	callSlots := make(chan struct{}, *maxCalls)

	opt, err := asynq.ParseRedisURI(*redisURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	transport := &http.Transport{MaxIdleConns: *maxCalls, MaxIdleConnsPerHost: *maxCalls,
		MaxConnsPerHost: *maxCalls, IdleConnTimeout: 90 * time.Second}
	client := &http.Client{Transport: transport, Timeout: 660 * time.Second}
	var done atomic.Int64
	finished := make(chan struct{})
	handler := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		var p chatPayload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("bad payload: %w: %w", err, asynq.SkipRetry)
		}
		body, _ := json.Marshal(map[string]any{"model": p.Model, "messages": p.Messages})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *llmURL+"/chat/completions", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		callSlots <- struct{}{}
		resp, err := client.Do(req)
		if err != nil {
			<-callSlots
			return err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		<-callSlots
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("provider answered HTTP %d", resp.StatusCode)
		}
		var a answer
		if err := json.Unmarshal(bytes.TrimSpace(raw), &a); err != nil || len(a.Choices) == 0 || a.Choices[0].Message.Content == "" {
			return fmt.Errorf("malformed or empty answer")
		}
		if _, err := t.ResultWriter().Write([]byte(`{"ok":true}`)); err != nil {
			return err
		}
		if done.Add(1) == *n {
			close(finished)
		}
		return nil
	})
	srv := asynq.NewServer(opt, asynq.Config{Concurrency: *concurrency, Queues: map[string]int{"default": 1},
		LogLevel: asynq.WarnLevel})
	if err := srv.Start(handler); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	emit(map[string]any{"event": "ready", "pid": os.Getpid()})
	<-finished
	srv.Shutdown()
	emit(map[string]any{"event": "done", "n": done.Load()})
}
