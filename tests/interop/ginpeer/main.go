// ginpeer: a gin server answering the Go original's HTTP routes on an asynq Redis, so the tests can
// compare our answers with real gin + encoding/json + asynq output for the same requests. Written for
// the tests from the original's documented behaviour; no code of the original is used.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"

	"github.com/syt-queue/sytq/tests/interop/ginpeer/types"
)

var listStates = map[string]string{
	"pending": "pending", "active": "active", "completed": "completed",
	"failed": "retry", "retry": "retry", "archived": "archived",
}

func answer(c *gin.Context, code int, message string, data interface{}) {
	c.JSON(code, types.CommonResponse{Code: code, Message: message, Data: data})
}

func list(inspector *asynq.Inspector, state, queue string, opts ...asynq.ListOption) ([]*asynq.TaskInfo, error) {
	switch state {
	case "pending":
		return inspector.ListPendingTasks(queue, opts...)
	case "completed":
		return inspector.ListCompletedTasks(queue, opts...)
	case "retry":
		return inspector.ListRetryTasks(queue, opts...)
	case "archived":
		return inspector.ListArchivedTasks(queue, opts...)
	default:
		return inspector.ListActiveTasks(queue, opts...)
	}
}

func health(message string) gin.HandlerFunc {
	return func(c *gin.Context) {
		answer(c, 200, message, map[string]interface{}{"status": "ok", "timestamp": time.Now().Unix()})
	}
}

func main() {
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	flag.Parse()
	opt := asynq.RedisClientOpt{Addr: *redisAddr}
	client := asynq.NewClient(opt)
	inspector := asynq.NewInspector(opt)

	gin.SetMode(gin.ReleaseMode)
	router := gin.New()
	router.POST("/api/tasks/llm", func(c *gin.Context) {
		var req types.CreateTaskRequest
		if err := c.ShouldBindJSON(&req); err != nil {
			answer(c, 400, err.Error(), nil)
			return
		}
		payload, _ := json.Marshal(types.LLMPayload{TableName: req.TableName, ID: req.ID})
		info, err := client.Enqueue(asynq.NewTask("llm:process", payload))
		if err != nil {
			answer(c, 500, "Failed to enqueue task", nil)
			return
		}
		answer(c, 200, "Success", types.CreateTaskResponse{TaskID: info.ID, Status: "enqueued"})
	})
	router.GET("/api/tasks/:id", func(c *gin.Context) {
		info, err := inspector.GetTaskInfo("default", c.Param("id"))
		if err != nil {
			answer(c, 500, "Failed to get task info: "+err.Error(), nil)
			return
		}
		answer(c, 200, "Success", types.TaskStatus{
			TaskID: info.ID, Status: info.State.String(), QueueName: info.Queue,
			CreatedAt: info.NextProcessAt.Unix(), RetryCount: info.Retried,
		})
	})
	router.GET("/api/tasks", func(c *gin.Context) {
		var req types.ListTasksRequest
		if err := c.ShouldBindQuery(&req); err != nil {
			answer(c, 400, "Invalid query parameters: "+err.Error(), nil)
			return
		}
		if req.Limit <= 0 {
			req.Limit = 10
		} else if req.Limit > 100 {
			req.Limit = 100
		}
		if req.Offset < 0 {
			req.Offset = 0
		}
		queue := req.QueueName
		if queue == "" {
			queue = "default"
		}
		state, ok := listStates[req.Status]
		if !ok {
			state = "active"
		}
		found, err := list(inspector, state, queue, asynq.PageSize(req.Limit), asynq.Page(req.Offset/req.Limit+1))
		if err != nil {
			answer(c, 500, "Failed to list tasks: "+err.Error(), nil)
			return
		}
		tasks := make([]types.ListedTask, len(found))
		for i, t := range found {
			tasks[i] = types.ListedTask{
				TaskID: t.ID, Status: t.State.String(), QueueName: t.Queue,
				CreatedAt: t.NextProcessAt.Unix(), RetryCount: t.Retried, Type: t.Type,
			}
		}
		answer(c, 200, "Success", types.TaskList{Tasks: tasks, TotalCount: len(tasks), Limit: req.Limit, Offset: req.Offset})
	})
	router.GET("/health", health("Service is running"))
	router.GET("/healthz/live", health("Service is alive"))

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	// The chosen port, for the test to read.
	os.Stdout.WriteString(listener.Addr().String() + "\n")
	log.Fatal(http.Serve(listener, router))
}
