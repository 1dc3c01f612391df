<?php
// A callback endpoint that accepts only correctly signed deliveries.
// Run it with PHP's built-in server:  SYTQ_CALLBACK_SECRET=... php -S 127.0.0.1:8000 callback_receiver.php
// Accepted callbacks are appended (one JSON line each) to SYTQ_CALLBACK_LOG (default: callbacks.jsonl here).
require __DIR__ . '/sytq_client.php';

$secret = getenv('SYTQ_CALLBACK_SECRET');
if ($secret === false || $secret === '') {
    http_response_code(500);
    echo json_encode(['error' => 'SYTQ_CALLBACK_SECRET is not set']);
    exit;
}
if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    http_response_code(405);
    echo json_encode(['error' => 'POST only']);
    exit;
}
$body = file_get_contents('php://input');
$signature = $_SERVER['HTTP_X_SYTQ_SIGNATURE'] ?? null;
$timestamp = $_SERVER['HTTP_X_SYTQ_TIMESTAMP'] ?? null;
if (!sytq_verify_callback($secret, $body, $signature, $timestamp)) {
    http_response_code(401);
    echo json_encode(['error' => 'bad signature']);
    exit;
}
$event = json_decode($body, true);
if (!is_array($event) || !isset($event['task_id'])) {
    http_response_code(400);
    echo json_encode(['error' => 'not a SYT Queue callback']);
    exit;
}
// Deliveries are at-least-once: the Idempotency-Key header (= task id) lets you drop repeats.
$log = getenv('SYTQ_CALLBACK_LOG') ?: __DIR__ . '/callbacks.jsonl';
file_put_contents($log, json_encode([
    'idempotency_key' => $_SERVER['HTTP_IDEMPOTENCY_KEY'] ?? null,
    'event' => $event,
], JSON_UNESCAPED_UNICODE) . "\n", FILE_APPEND | LOCK_EX);
http_response_code(200);
echo json_encode(['ok' => true]);
