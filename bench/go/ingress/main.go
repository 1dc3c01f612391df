// ingress: the Go peer of bench_api. A gin endpoint per contract that validates the body and
// enqueues through the asynq client the way the original Go system's handler does (default queue,
// default options), answering with the same JSON. Written for the benchmark; no code of the
// original is used. Listens on -addr until killed.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
)

type recordRequest struct {
	TableName string `json:"table_name" binding:"required"`
	ID        int64  `json:"id" binding:"required"`
}

type chatRequest struct {
	Prompt      string `json:"prompt" binding:"required"`
	Model       string `json:"model"`
	CallbackURL string `json:"callback_url"`
}

type envelope struct {
	Code    int         `json:"code"`
	Message string      `json:"message"`
	Data    interface{} `json:"data,omitempty"`
}

type enqueued struct {
	TaskID string `json:"task_id"`
	Status string `json:"status"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	flag.Parse()

	client := asynq.NewClient(asynq.RedisClientOpt{Addr: *redisAddr})
	defer client.Close()

	gin.SetMode(gin.ReleaseMode)
	router := gin.New()
	router.Use(gin.Recovery())

	router.POST("/api/tasks/llm", func(c *gin.Context) {
		var req recordRequest
		if err := c.ShouldBindJSON(&req); err != nil {
			c.JSON(http.StatusBadRequest, envelope{Code: 400, Message: err.Error()})
			return
		}
		payload, _ := json.Marshal(req)
		info, err := client.Enqueue(asynq.NewTask("llm:process", payload))
		if err != nil {
			c.JSON(http.StatusInternalServerError, envelope{Code: 500, Message: err.Error()})
			return
		}
		c.JSON(http.StatusOK, envelope{Code: 200, Message: "Success", Data: enqueued{info.ID, "enqueued"}})
	})

	router.POST("/api/v1/tasks/llm", func(c *gin.Context) {
		var req chatRequest
		if err := c.ShouldBindJSON(&req); err != nil {
			c.JSON(http.StatusUnprocessableEntity, gin.H{"error": err.Error()})
			return
		}
		if req.Model == "" {
			req.Model = "deepseek-chat"
		}
		payload, _ := json.Marshal(map[string]interface{}{
			"model":        req.Model,
			"messages":     []map[string]string{{"role": "user", "content": req.Prompt}},
			"callback_url": req.CallbackURL,
		})
		info, err := client.Enqueue(asynq.NewTask("llm:chat", payload))
		if err != nil {
			c.JSON(http.StatusInternalServerError, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, enqueued{info.ID, "enqueued"})
	})

	log.Fatal(router.Run(*addr))
}
