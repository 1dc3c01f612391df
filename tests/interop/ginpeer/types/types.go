// Package types holds the request and response shapes of the Go original's HTTP API as its clients
// see them (JSON names, field order, the struct names its error messages carry). Written for the
// byte-comparison tests from the original's documented behaviour.
package types

type CreateTaskRequest struct {
	TableName string `json:"table_name" binding:"required"`
	ID        int64  `json:"id" binding:"required"`
}

type LLMPayload struct {
	TableName string `json:"table_name"`
	ID        int64  `json:"id"`
}

type CreateTaskResponse struct {
	TaskID string `json:"task_id"`
	Status string `json:"status"`
}

type TaskStatus struct {
	TaskID     string `json:"task_id"`
	Status     string `json:"status"`
	QueueName  string `json:"queue_name"`
	CreatedAt  int64  `json:"created_at"`
	RetryCount int    `json:"retry_count"`
}

type ListTasksRequest struct {
	Status    string `form:"status"`
	QueueName string `form:"queue_name"`
	Limit     int    `form:"limit"`
	Offset    int    `form:"offset"`
}

type ListedTask struct {
	TaskID     string `json:"task_id"`
	Status     string `json:"status"`
	QueueName  string `json:"queue_name"`
	CreatedAt  int64  `json:"created_at"`
	RetryCount int    `json:"retry_count"`
	Type       string `json:"type"`
}

type TaskList struct {
	Tasks      []ListedTask `json:"tasks"`
	TotalCount int          `json:"total_count"`
	Limit      int          `json:"limit"`
	Offset     int          `json:"offset"`
}

type CommonResponse struct {
	Code    int         `json:"code"`
	Message string      `json:"message"`
	Data    interface{} `json:"data,omitempty"`
}
