<?php
// Minimal SYT Queue client for plain PHP + ext-curl. No framework, no Composer.
// Configuration by environment: SYTQ_API_URL (default http://127.0.0.1:8080), and optionally
// SYTQ_API_KEY (Bearer) or SYTQ_API_USER + SYTQ_API_PASSWORD (HTTP Basic).

function sytq_api_url(): string
{
    $url = getenv('SYTQ_API_URL');
    return rtrim($url !== false && $url !== '' ? $url : 'http://127.0.0.1:8080', '/');
}

/**
 * Calls the API and returns [HTTP status, decoded JSON body]. Throws RuntimeException on
 * transport errors and on non-JSON answers.
 */
function sytq_request(string $method, string $path, ?array $body = null): array
{
    $headers = ['Accept: application/json'];
    $ch = curl_init(sytq_api_url() . $path);
    $key = getenv('SYTQ_API_KEY');
    $user = getenv('SYTQ_API_USER');
    if ($key !== false && $key !== '') {
        $headers[] = 'Authorization: Bearer ' . $key;
    } elseif ($user !== false && $user !== '') {
        curl_setopt($ch, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_setopt($ch, CURLOPT_USERPWD, $user . ':' . (string)getenv('SYTQ_API_PASSWORD'));
    }
    curl_setopt($ch, CURLOPT_CUSTOMREQUEST, $method);
    curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
    curl_setopt($ch, CURLOPT_CONNECTTIMEOUT, 5);
    curl_setopt($ch, CURLOPT_TIMEOUT, 30);
    if ($body !== null) {
        $headers[] = 'Content-Type: application/json';
        curl_setopt($ch, CURLOPT_POSTFIELDS, json_encode($body, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES));
    }
    curl_setopt($ch, CURLOPT_HTTPHEADER, $headers);
    $raw = curl_exec($ch);
    if ($raw === false) {
        $error = curl_error($ch);
        curl_close($ch);
        throw new RuntimeException("cannot reach SYT Queue at " . sytq_api_url() . ": $error");
    }
    $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    curl_close($ch);
    $decoded = json_decode($raw, true);
    if (!is_array($decoded)) {
        throw new RuntimeException("HTTP $status with a non-JSON body");
    }
    return [$status, $decoded];
}

/** Submits a prompt; returns the task id. Retries 429/503 after Retry-After-ish pauses. */
function sytq_submit(string $prompt, array $options = []): string
{
    $body = array_merge(['prompt' => $prompt], $options);
    for ($attempt = 1; ; $attempt++) {
        [$status, $answer] = sytq_request('POST', '/api/v1/tasks/llm', $body);
        if ($status === 200) {
            return $answer['task_id'];
        }
        if (($status === 429 || $status === 503) && $attempt < 5) {
            sleep($attempt);
            continue;
        }
        throw new RuntimeException("submit failed: HTTP $status: " . json_encode($answer['detail'] ?? $answer));
    }
}

/** Polls a task until it has finished; returns the task view (state, result, usage, error). */
function sytq_wait(string $taskId, int $timeoutSeconds = 600): array
{
    $deadline = time() + $timeoutSeconds;
    $pause = 200000; // microseconds
    while (true) {
        [$status, $task] = sytq_request('GET', '/api/v1/tasks/' . rawurlencode($taskId));
        if ($status !== 200 && $status !== 404) {
            throw new RuntimeException("poll failed: HTTP $status: " . json_encode($task));
        }
        $finished = in_array($task['state'] ?? '', ['completed', 'succeeded', 'failed', 'archived'], true);
        if ($status === 200 && $finished && (isset($task['result']) || isset($task['error']))) {
            return $task;
        }
        if (time() > $deadline) {
            throw new RuntimeException("task $taskId not finished after {$timeoutSeconds}s");
        }
        usleep($pause);
        $pause = min($pause * 2, 2000000);
    }
}

/**
 * Verifies a callback: X-SYTQ-Signature = "sha256=" . hex(hmac_sha256(secret, "$timestamp.$body")),
 * with the timestamp no older (or newer) than $toleranceSeconds.
 */
function sytq_verify_callback(string $secret, string $body, ?string $signature, ?string $timestamp,
                              int $toleranceSeconds = 300): bool
{
    if ($signature === null || $timestamp === null || !ctype_digit($timestamp)) {
        return false;
    }
    if (abs(time() - (int)$timestamp) > $toleranceSeconds) {
        return false;
    }
    $expected = 'sha256=' . hash_hmac('sha256', $timestamp . '.' . $body, $secret);
    return hash_equals($expected, trim($signature));
}
