// Command gomarshal prints Go's json.Marshal of the record-mode callback map (result read from stdin,
// timestamp as the first argument), the bytes the Go original sent, to compare ours against.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gomarshal <unix seconds> < result")
		os.Exit(2)
	}
	timestamp, err := strconv.ParseInt(os.Args[1], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	result, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	body := map[string]interface{}{"result": string(result), "status": "success", "timestamp": timestamp}
	data, err := json.Marshal(body)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(data)
}
