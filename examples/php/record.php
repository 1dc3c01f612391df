<?php
// Usage: php record.php <table_name> <id> [timeout_seconds]
// Submits the record (the Go original's POST /api/tasks/llm), waits, prints "<task_id> completed"
// (exit 0) or "<task_id> archived" (exit 1: every attempt failed; the row's failed_info says why).
// Env: SYTQ_API_URL, SYTQ_API_USER + SYTQ_API_PASSWORD or SYTQ_API_KEY.
require __DIR__ . '/sytq_records.php';

if ($argc < 3 || !ctype_digit($argv[2])) {
    fwrite(STDERR, "usage: php record.php <table_name> <id> [timeout_seconds]\n");
    exit(2);
}
try {
    $taskId = sytq_records_submit($argv[1], (int)$argv[2]);
    $outcome = sytq_records_wait($taskId, (int)($argv[3] ?? 600));
} catch (RuntimeException $e) {
    fwrite(STDERR, "record.php: " . $e->getMessage() . "\n");
    exit(1);
}
echo $taskId, ' ', $outcome['state'], "\n";
exit($outcome['state'] === 'completed' ? 0 : 1);
