<?php
// Usage: php poll.php <task_id> [timeout_seconds]
// Waits for the task and prints its answer (or its error, exit 1). Env: SYTQ_API_URL, SYTQ_API_KEY.
require __DIR__ . '/sytq_client.php';

if ($argc < 2) {
    fwrite(STDERR, "usage: php poll.php <task_id> [timeout_seconds]\n");
    exit(2);
}
try {
    $task = sytq_wait($argv[1], (int)($argv[2] ?? 600));
} catch (RuntimeException $e) {
    fwrite(STDERR, "poll.php: " . $e->getMessage() . "\n");
    exit(1);
}
if (($task['status'] ?? '') === 'failed' || !isset($task['result']['content'])) {
    fwrite(STDERR, "task {$task['task_id']} {$task['state']}: " . ($task['error'] ?? 'no result') . "\n");
    exit(1);
}
echo $task['result']['content'], "\n";
