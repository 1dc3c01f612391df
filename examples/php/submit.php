<?php
// Usage: php submit.php "your prompt" [callback_url]
// Prints the task id. Env: SYTQ_API_URL, SYTQ_API_KEY.
require __DIR__ . '/sytq_client.php';

if ($argc < 2) {
    fwrite(STDERR, "usage: php submit.php \"prompt\" [callback_url]\n");
    exit(2);
}
$options = ['model' => getenv('SYTQ_MODEL') ?: 'deepseek-chat'];
if ($argc >= 3) {
    $options['callback_url'] = $argv[2];
}
try {
    echo sytq_submit($argv[1], $options), "\n";
} catch (RuntimeException $e) {
    fwrite(STDERR, "submit.php: " . $e->getMessage() . "\n");
    exit(1);
}
