<?php
// Record mode, the Go original's contract: submit {table_name, id} to POST /api/tasks/llm and poll
// GET /api/tasks/{id}. The answer itself is written into the record's row (report, status 已完成) by
// the worker, as the original did; read it from your database. Configuration as sytq_client.php:
// SYTQ_API_URL, and SYTQ_API_USER + SYTQ_API_PASSWORD (the original's auth.users) or SYTQ_API_KEY.
require_once __DIR__ . '/sytq_client.php';

/** Asks for record $id of $table to be processed (llm:process); returns the task id. */
function sytq_records_submit(string $table, int $id): string
{
    for ($attempt = 1; ; $attempt++) {
        [$status, $answer] = sytq_request('POST', '/api/tasks/llm', ['table_name' => $table, 'id' => $id]);
        if ($status === 200 && ($answer['code'] ?? 0) === 200) {
            return $answer['data']['task_id'];
        }
        // 429 and 503 pass; so does the original's 500 "Failed to enqueue task" (Redis away).
        if (in_array($status, [429, 500, 503], true) && $attempt < 5) {
            sleep($attempt);
            continue;
        }
        throw new RuntimeException("submit failed: HTTP $status: " . ($answer['message'] ?? json_encode($answer)));
    }
}

/**
 * Polls the task until it has left the queue's unfinished states. Returns
 *   ['state' => 'completed'] once it is done: a finished llm:process task is removed from the
 *     queue, so GET answers the original's 500 "asynq: task not found" (or shows it completed);
 *   ['state' => 'archived', 'retry_count' => n] when every attempt failed (the row says why).
 */
function sytq_records_wait(string $taskId, int $timeoutSeconds = 600): array
{
    $deadline = time() + $timeoutSeconds;
    $pause = 200000; // microseconds
    while (true) {
        [$status, $answer] = sytq_request('GET', '/api/tasks/' . rawurlencode($taskId));
        $message = $answer['message'] ?? '';
        if ($status === 200) {
            $task = $answer['data'];
            if ($task['status'] === 'completed' || $task['status'] === 'archived') {
                return ['state' => $task['status'], 'retry_count' => $task['retry_count']];
            }
        } elseif ($status === 500 && str_ends_with($message, 'asynq: task not found')) {
            return ['state' => 'completed'];
        } elseif ($status !== 503 && $status !== 429) {
            throw new RuntimeException("poll failed: HTTP $status: $message");
        }
        if (time() > $deadline) {
            throw new RuntimeException("task $taskId not finished after {$timeoutSeconds}s");
        }
        usleep($pause);
        $pause = min($pause * 2, 2000000);
    }
}
