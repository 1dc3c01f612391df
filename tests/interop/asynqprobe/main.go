// Command asynqprobe drives the real Go asynq library (client, server, Inspector)
// against a Redis server so that our Python engine can be checked against it and
// benchmarked side by side. Every subcommand prints JSON on stdout; logs go to stderr.
//
//	asynqprobe enqueue  --redis URL            < specs.json   (JSON array of task specs)
//	asynqprobe serve    --redis URL [--types a,b] [--queues q=1,..] [--fail first|always|skip] ...
//	asynqprobe inspect  --redis URL --queue Q [--ids a,b]
//	asynqprobe list     --redis URL --queue Q --state pending|active|scheduled|retry|archived|completed
//	asynqprobe op       --redis URL --action run|archive|delete|cancel|pause|unpause --queue Q [--id ID]
//	asynqprobe servers  --redis URL
//	asynqprobe bench-enqueue --redis URL --n N [--concurrency C]
//	asynqprobe bench-process --redis URL --n N [--concurrency C]
//
// --redis also takes redis+cluster://host:port,host:port (a Redis Cluster: RedisClusterClientOpt).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: asynqprobe <enqueue|serve|inspect|list|op|servers|bench-enqueue|bench-process> [flags]"))
	}
	commands := map[string]func([]string) error{
		"enqueue":       cmdEnqueue,
		"serve":         cmdServe,
		"inspect":       cmdInspect,
		"list":          cmdList,
		"op":            cmdOp,
		"servers":       cmdServers,
		"bench-enqueue": cmdBenchEnqueue,
		"bench-process": cmdBenchProcess,
	}
	run, ok := commands[os.Args[1]]
	if !ok {
		fail(fmt.Errorf("unknown subcommand %q", os.Args[1]))
	}
	if err := run(os.Args[2:]); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "asynqprobe:", err)
	os.Exit(2)
}

// jsonOut serialises writes from concurrent handlers: one JSON document per line.
var (
	outMu   sync.Mutex
	encoder = json.NewEncoder(os.Stdout)
)

func emit(v any) {
	outMu.Lock()
	defer outMu.Unlock()
	if err := encoder.Encode(v); err != nil {
		fail(err)
	}
}

func redisOpt(uri string) (asynq.RedisConnOpt, error) {
	if nodes, ok := strings.CutPrefix(uri, "redis+cluster://"); ok {
		return asynq.RedisClusterClientOpt{Addrs: strings.Split(strings.TrimSuffix(nodes, "/"), ",")}, nil
	}
	opt, err := asynq.ParseRedisURI(uri)
	if err != nil {
		return nil, fmt.Errorf("bad --redis %q: %w", uri, err)
	}
	return opt, nil
}

// unixOrZero keeps "no value" distinguishable from a time: 0 means unset.
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// ---------------------------------------------------------------- enqueue

// taskSpec is one task to enqueue; times are Unix seconds, durations seconds.
type taskSpec struct {
	Type        string            `json:"type"`
	Payload     []byte            `json:"payload"` // base64 in JSON
	Headers     map[string]string `json:"headers,omitempty"`
	Queue       string            `json:"queue,omitempty"`
	TaskID      string            `json:"task_id,omitempty"`
	MaxRetry    *int              `json:"max_retry,omitempty"`
	ProcessIn   float64           `json:"process_in,omitempty"`
	ProcessAt   float64           `json:"process_at,omitempty"`
	UniqueFor   float64           `json:"unique_for,omitempty"`
	Timeout     float64           `json:"timeout,omitempty"`
	Deadline    float64           `json:"deadline,omitempty"`
	Retention   float64           `json:"retention,omitempty"`
	expectedErr string
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func unixTime(s float64) time.Time {
	return time.Unix(0, int64(s*float64(time.Second)))
}

func (s taskSpec) options() []asynq.Option {
	var opts []asynq.Option
	if s.Queue != "" {
		opts = append(opts, asynq.Queue(s.Queue))
	}
	if s.TaskID != "" {
		opts = append(opts, asynq.TaskID(s.TaskID))
	}
	if s.MaxRetry != nil {
		opts = append(opts, asynq.MaxRetry(*s.MaxRetry))
	}
	if s.ProcessIn > 0 {
		opts = append(opts, asynq.ProcessIn(seconds(s.ProcessIn)))
	}
	if s.ProcessAt > 0 {
		opts = append(opts, asynq.ProcessAt(unixTime(s.ProcessAt)))
	}
	if s.UniqueFor > 0 {
		opts = append(opts, asynq.Unique(seconds(s.UniqueFor)))
	}
	if s.Timeout > 0 {
		opts = append(opts, asynq.Timeout(seconds(s.Timeout)))
	}
	if s.Deadline > 0 {
		opts = append(opts, asynq.Deadline(unixTime(s.Deadline)))
	}
	if s.Retention > 0 {
		opts = append(opts, asynq.Retention(seconds(s.Retention)))
	}
	return opts
}

// taskView is the Inspector's TaskInfo as JSON, with stable snake_case names.
type taskView struct {
	ID            string            `json:"id"`
	Queue         string            `json:"queue"`
	Type          string            `json:"type"`
	Payload       []byte            `json:"payload"`
	Headers       map[string]string `json:"headers"`
	State         string            `json:"state"`
	MaxRetry      int               `json:"max_retry"`
	Retried       int               `json:"retried"`
	LastErr       string            `json:"last_err"`
	LastFailedAt  int64             `json:"last_failed_at"`
	TimeoutSec    float64           `json:"timeout"`
	Deadline      int64             `json:"deadline"`
	NextProcessAt int64             `json:"next_process_at"`
	IsOrphaned    bool              `json:"is_orphaned"`
	RetentionSec  float64           `json:"retention"`
	CompletedAt   int64             `json:"completed_at"`
	Result        []byte            `json:"result"`
}

func viewOf(t *asynq.TaskInfo) taskView {
	return taskView{
		ID: t.ID, Queue: t.Queue, Type: t.Type, Payload: t.Payload, Headers: t.Headers,
		State: t.State.String(), MaxRetry: t.MaxRetry, Retried: t.Retried, LastErr: t.LastErr,
		LastFailedAt: unixOrZero(t.LastFailedAt), TimeoutSec: t.Timeout.Seconds(),
		Deadline: unixOrZero(t.Deadline), NextProcessAt: unixOrZero(t.NextProcessAt),
		IsOrphaned: t.IsOrphaned, RetentionSec: t.Retention.Seconds(),
		CompletedAt: unixOrZero(t.CompletedAt), Result: t.Result,
	}
}

// enqueueResult carries either the task info or the client's error for one spec.
type enqueueResult struct {
	Task  *taskView `json:"task,omitempty"`
	Error string    `json:"error,omitempty"`
	// Kind classifies well-known client errors so callers need not parse messages.
	Kind string `json:"kind,omitempty"`
}

func cmdEnqueue(args []string) error {
	fs := flag.NewFlagSet("enqueue", flag.ExitOnError)
	uri := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	_ = fs.Parse(args)
	opt, err := redisOpt(*uri)
	if err != nil {
		return err
	}
	var specs []taskSpec
	if err := json.NewDecoder(os.Stdin).Decode(&specs); err != nil {
		return fmt.Errorf("stdin must hold a JSON array of task specs: %w", err)
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	results := make([]enqueueResult, 0, len(specs))
	for _, spec := range specs {
		if spec.Type == "" {
			return errors.New("every task spec needs a type")
		}
		task := asynq.NewTaskWithHeaders(spec.Type, spec.Payload, spec.Headers, spec.options()...)
		info, err := client.Enqueue(task)
		if err != nil {
			results = append(results, enqueueResult{Error: err.Error(), Kind: errorKind(err)})
			continue
		}
		view := viewOf(info)
		results = append(results, enqueueResult{Task: &view})
	}
	emit(results)
	return nil
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, asynq.ErrDuplicateTask):
		return "duplicate_task"
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return "task_id_conflict"
	case errors.Is(err, asynq.ErrQueueNotFound):
		return "queue_not_found"
	case errors.Is(err, asynq.ErrTaskNotFound):
		return "task_not_found"
	}
	return "other"
}

// ---------------------------------------------------------------- serve

// parseQueues reads "critical=6,default=3" into asynq's priority map.
func parseQueues(s string) (map[string]int, error) {
	queues := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, weight, found := strings.Cut(part, "=")
		w := 1
		if found {
			n, err := strconv.Atoi(weight)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("bad queue weight in %q", part)
			}
			w = n
		}
		queues[name] = w
	}
	if len(queues) == 0 {
		return nil, errors.New("--queues is empty")
	}
	return queues, nil
}

// handledEvent is one attempt the Go server ran, printed as a JSON line.
type handledEvent struct {
	Event    string `json:"event"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Queue    string `json:"queue"`
	Payload  []byte `json:"payload"`
	Retried  int    `json:"retried"`
	MaxRetry int    `json:"max_retry"`
	Outcome  string `json:"outcome"`
	At       int64  `json:"at_ns"`
}

type serveConfig struct {
	failMode     string
	failTypes    map[string]bool
	resultPrefix string
	block        bool
	count        int64
	handled      atomic.Int64
	done         chan struct{}
	doneOnce     sync.Once
	stopping     chan struct{} // closed on SIGTERM/SIGINT so blocked handlers give their task back
}

func (c *serveConfig) handle(ctx context.Context, t *asynq.Task) error {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	ev := handledEvent{Event: "handled", ID: id, Type: t.Type(), Queue: queue, Payload: t.Payload(),
		Retried: retried, MaxRetry: maxRetry, At: time.Now().UnixNano()}
	if c.block {
		// Hold the task (and its lease) until the process is stopped or killed.
		ev.Event, ev.Outcome = "running", "blocked"
		emit(ev)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.stopping:
			return errors.New("asynqprobe is shutting down")
		}
	}
	var err error
	if len(c.failTypes) == 0 || c.failTypes[t.Type()] {
		switch c.failMode {
		case "first":
			if retried == 0 {
				err = fmt.Errorf("go handler fails first attempt of %s", id)
			}
		case "always":
			err = fmt.Errorf("go handler always fails %s", id)
		case "skip":
			err = fmt.Errorf("go handler gives up on %s: %w", id, asynq.SkipRetry)
		}
	}
	if err == nil && t.ResultWriter() != nil {
		result := append([]byte(c.resultPrefix), t.Payload()...)
		if _, werr := t.ResultWriter().Write(result); werr != nil {
			err = fmt.Errorf("write result: %w", werr)
		}
	}
	ev.Outcome = "ok"
	if err != nil {
		ev.Outcome = "error"
		if errors.Is(err, asynq.SkipRetry) {
			ev.Outcome = "skip"
		}
	}
	emit(ev)
	if err == nil && c.count > 0 && c.handled.Add(1) >= c.count {
		c.doneOnce.Do(func() { close(c.done) })
	}
	return err
}

func cmdServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	uri := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	types := fs.String("types", "", "comma-separated task types to register (empty: every type)")
	queuesFlag := fs.String("queues", "default=1", "queue=weight,...")
	strict := fs.Bool("strict", false, "strict queue priority")
	concurrency := fs.Int("concurrency", 10, "worker goroutines")
	failMode := fs.String("fail", "none", "none|first|always|skip")
	failTypes := fs.String("fail-types", "", "comma-separated types the failure mode applies to (empty: all)")
	resultPrefix := fs.String("result-prefix", "go:", "the result written is this prefix + payload")
	block := fs.Bool("block", false, "handlers hold their task until the process stops (for crash tests)")
	count := fs.Int64("count", 0, "stop after this many successful attempts (0: run for --duration)")
	duration := fs.Duration("duration", 60*time.Second, "longest run time")
	retryDelay := fs.Duration("retry-delay", 0, "retry delay for failed tasks")
	checkInterval := fs.Duration("check-interval", 200*time.Millisecond, "how often due scheduled/retry tasks are forwarded")
	shutdown := fs.Duration("shutdown-timeout", 8*time.Second, "graceful shutdown wait")
	_ = fs.Parse(args)
	if *failMode != "none" && *failMode != "first" && *failMode != "always" && *failMode != "skip" {
		return fmt.Errorf("bad --fail %q", *failMode)
	}
	opt, err := redisOpt(*uri)
	if err != nil {
		return err
	}
	queues, err := parseQueues(*queuesFlag)
	if err != nil {
		return err
	}
	cfg := &serveConfig{failMode: *failMode, failTypes: setOf(*failTypes), resultPrefix: *resultPrefix,
		block: *block, count: *count, done: make(chan struct{}), stopping: make(chan struct{})}
	delay := *retryDelay
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency:              *concurrency,
		Queues:                   queues,
		StrictPriority:           *strict,
		ShutdownTimeout:          *shutdown,
		DelayedTaskCheckInterval: *checkInterval,
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return delay },
		LogLevel:                 asynq.WarnLevel,
	})
	var handler asynq.Handler = asynq.HandlerFunc(cfg.handle)
	if *types != "" {
		// Only the listed types: others fail with asynq's "handler not found" like a real deployment.
		mux := asynq.NewServeMux()
		for t := range setOf(*types) {
			mux.HandleFunc(t, cfg.handle)
		}
		handler = mux
	}
	if err := srv.Start(handler); err != nil {
		return err
	}
	emit(map[string]any{"event": "ready", "pid": os.Getpid()})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-cfg.done:
	case <-stop:
	case <-time.After(*duration):
	}
	close(cfg.stopping)
	srv.Shutdown()
	emit(map[string]any{"event": "stopped", "handled": cfg.handled.Load()})
	return nil
}

func setOf(csv string) map[string]bool {
	set := map[string]bool{}
	for _, s := range strings.Split(csv, ",") {
		if s = strings.TrimSpace(s); s != "" {
			set[s] = true
		}
	}
	return set
}

// ---------------------------------------------------------------- inspect

type queueView struct {
	Queue          string  `json:"queue"`
	Size           int     `json:"size"`
	Pending        int     `json:"pending"`
	Active         int     `json:"active"`
	Scheduled      int     `json:"scheduled"`
	Retry          int     `json:"retry"`
	Archived       int     `json:"archived"`
	Completed      int     `json:"completed"`
	Aggregating    int     `json:"aggregating"`
	Processed      int     `json:"processed"`
	Failed         int     `json:"failed"`
	ProcessedTotal int     `json:"processed_total"`
	FailedTotal    int     `json:"failed_total"`
	Paused         bool    `json:"paused"`
	LatencySec     float64 `json:"latency"`
}

type taskLookup struct {
	Task  *taskView `json:"task,omitempty"`
	Error string    `json:"error,omitempty"`
	Kind  string    `json:"kind,omitempty"`
}

func cmdInspect(args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ExitOnError)
	uri := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	queue := fs.String("queue", "default", "queue name")
	ids := fs.String("ids", "", "comma-separated task ids to look up")
	_ = fs.Parse(args)
	opt, err := redisOpt(*uri)
	if err != nil {
		return err
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	out := map[string]any{}
	queues, err := insp.Queues()
	if err != nil {
		return err
	}
	sort.Strings(queues)
	out["queues"] = queues
	if qi, err := insp.GetQueueInfo(*queue); err == nil {
		out["stats"] = queueView{
			Queue: qi.Queue, Size: qi.Size, Pending: qi.Pending, Active: qi.Active, Scheduled: qi.Scheduled,
			Retry: qi.Retry, Archived: qi.Archived, Completed: qi.Completed, Aggregating: qi.Aggregating,
			Processed: qi.Processed, Failed: qi.Failed, ProcessedTotal: qi.ProcessedTotal,
			FailedTotal: qi.FailedTotal, Paused: qi.Paused, LatencySec: qi.Latency.Seconds(),
		}
	} else {
		out["stats_error"] = err.Error()
	}
	tasks := map[string]taskLookup{}
	for id := range setOf(*ids) {
		info, err := insp.GetTaskInfo(*queue, id)
		if err != nil {
			tasks[id] = taskLookup{Error: err.Error(), Kind: errorKind(err)}
			continue
		}
		view := viewOf(info)
		tasks[id] = taskLookup{Task: &view}
	}
	out["tasks"] = tasks
	emit(out)
	return nil
}

func cmdList(args []string) error {
	fs := flag.NewFlagSet("list", flag.ExitOnError)
	uri := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	queue := fs.String("queue", "default", "queue name")
	state := fs.String("state", "pending", "pending|active|scheduled|retry|archived|completed")
	pageSize := fs.Int("page-size", 30, "page size")
	page := fs.Int("page", 1, "page number, from 1")
	_ = fs.Parse(args)
	opt, err := redisOpt(*uri)
	if err != nil {
		return err
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	listers := map[string]func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		"pending": insp.ListPendingTasks, "active": insp.ListActiveTasks,
		"scheduled": insp.ListScheduledTasks, "retry": insp.ListRetryTasks,
		"archived": insp.ListArchivedTasks, "completed": insp.ListCompletedTasks,
	}
	lister, ok := listers[*state]
	if !ok {
		return fmt.Errorf("bad --state %q", *state)
	}
	infos, err := lister(*queue, asynq.PageSize(*pageSize), asynq.Page(*page))
	if err != nil {
		return err
	}
	views := make([]taskView, 0, len(infos))
	for _, info := range infos {
		views = append(views, viewOf(info))
	}
	emit(views)
	return nil
}

func cmdOp(args []string) error {
	fs := flag.NewFlagSet("op", flag.ExitOnError)
	uri := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	action := fs.String("action", "", "run|archive|delete|cancel|pause|unpause")
	queue := fs.String("queue", "default", "queue name")
	id := fs.String("id", "", "task id")
	_ = fs.Parse(args)
	opt, err := redisOpt(*uri)
	if err != nil {
		return err
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	switch *action {
	case "run":
		err = insp.RunTask(*queue, *id)
	case "archive":
		err = insp.ArchiveTask(*queue, *id)
	case "delete":
		err = insp.DeleteTask(*queue, *id)
	case "cancel":
		err = insp.CancelProcessing(*id)
	case "pause":
		err = insp.PauseQueue(*queue)
	case "unpause":
		err = insp.UnpauseQueue(*queue)
	default:
		return fmt.Errorf("bad --action %q", *action)
	}
	if err != nil {
		emit(map[string]string{"error": err.Error(), "kind": errorKind(err)})
		return nil
	}
	emit(map[string]string{"ok": *action})
	return nil
}

type workerView struct {
	TaskID   string `json:"task_id"`
	TaskType string `json:"task_type"`
	Payload  []byte `json:"payload"`
	Queue    string `json:"queue"`
	Started  int64  `json:"started"`
	Deadline int64  `json:"deadline"`
}

type serverView struct {
	ID             string         `json:"id"`
	Host           string         `json:"host"`
	PID            int            `json:"pid"`
	Concurrency    int            `json:"concurrency"`
	Queues         map[string]int `json:"queues"`
	StrictPriority bool           `json:"strict_priority"`
	Started        int64          `json:"started"`
	Status         string         `json:"status"`
	ActiveWorkers  []workerView   `json:"active_workers"`
}

func cmdServers(args []string) error {
	fs := flag.NewFlagSet("servers", flag.ExitOnError)
	uri := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	_ = fs.Parse(args)
	opt, err := redisOpt(*uri)
	if err != nil {
		return err
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	servers, err := insp.Servers()
	if err != nil {
		return err
	}
	views := make([]serverView, 0, len(servers))
	for _, s := range servers {
		v := serverView{ID: s.ID, Host: s.Host, PID: s.PID, Concurrency: s.Concurrency, Queues: s.Queues,
			StrictPriority: s.StrictPriority, Started: unixOrZero(s.Started), Status: s.Status,
			ActiveWorkers: []workerView{}}
		for _, w := range s.ActiveWorkers {
			v.ActiveWorkers = append(v.ActiveWorkers, workerView{TaskID: w.TaskID, TaskType: w.TaskType,
				Payload: w.TaskPayload, Queue: w.Queue, Started: unixOrZero(w.Started),
				Deadline: unixOrZero(w.Deadline)})
		}
		views = append(views, v)
	}
	sort.Slice(views, func(i, j int) bool { return views[i].ID < views[j].ID })
	emit(views)
	return nil
}

// ---------------------------------------------------------------- benchmarks

func cmdBenchEnqueue(args []string) error {
	fs := flag.NewFlagSet("bench-enqueue", flag.ExitOnError)
	uri := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	n := fs.Int("n", 20000, "tasks to enqueue")
	concurrency := fs.Int("concurrency", 1, "goroutines enqueueing at once (asynq has no batch enqueue)")
	queue := fs.String("queue", "default", "queue name")
	taskType := fs.String("type", "bench:noop", "task type")
	_ = fs.Parse(args)
	opt, err := redisOpt(*uri)
	if err != nil {
		return err
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	payload := []byte(`{"n":0}`)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) {
				if _, err := client.Enqueue(asynq.NewTask(*taskType, payload, asynq.Queue(*queue))); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	emit(map[string]any{"n": *n, "seconds": elapsed.Seconds(), "rate": float64(*n) / elapsed.Seconds(),
		"start_ns": start.UnixNano(), "end_ns": start.Add(elapsed).UnixNano()})
	return nil
}

func cmdBenchProcess(args []string) error {
	fs := flag.NewFlagSet("bench-process", flag.ExitOnError)
	uri := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	n := fs.Int64("n", 20000, "tasks to process before stopping")
	concurrency := fs.Int("concurrency", 100, "worker goroutines")
	queue := fs.String("queue", "default", "queue name")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	_ = fs.Parse(args)
	opt, err := redisOpt(*uri)
	if err != nil {
		return err
	}
	var done atomic.Int64
	var firstNs, lastNs atomic.Int64
	finished := make(chan struct{})
	var once sync.Once
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency: *concurrency, Queues: map[string]int{*queue: 1}, LogLevel: asynq.WarnLevel,
	})
	handler := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		now := time.Now().UnixNano()
		firstNs.CompareAndSwap(0, now)
		if done.Add(1) >= *n {
			lastNs.Store(now)
			once.Do(func() { close(finished) })
		}
		return nil
	})
	if err := srv.Start(handler); err != nil {
		return err
	}
	emit(map[string]any{"event": "ready", "pid": os.Getpid(), "at_ns": time.Now().UnixNano()})
	select {
	case <-finished:
	case <-time.After(*timeout):
		srv.Shutdown()
		return fmt.Errorf("processed only %d of %d tasks in %v", done.Load(), *n, *timeout)
	}
	srv.Shutdown() // waits for the last acknowledgements
	span := time.Duration(lastNs.Load() - firstNs.Load())
	emit(map[string]any{"event": "done", "n": *n, "first_ns": firstNs.Load(), "last_ns": lastNs.Load(),
		"acked_ns": time.Now().UnixNano(), "seconds": span.Seconds(), "rate": float64(*n) / span.Seconds()})
	return nil
}
