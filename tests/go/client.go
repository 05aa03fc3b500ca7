// A Go client of rpc-bridge that knows nothing but proto/ and grpc-go; the Go
// examples of docs/grpc.md are excerpts of it.
//
//	client HOST:PORT
//
// Calls "echo" on topic "bridge" with a map argument and prints the result, then
// calls "fail" and prints what the grpc-status-details-bin trailer holds: the status
// code, and the reason, module, class name and message of its bridge.v1.Failure.
// Exits 1 when a call does not end that way. Every call has a deadline.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	bridgev1 "github.com/rpc-bridge/rpc-bridge/gen/go/bridge/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// format writes a Value as text: null, true, integers as digits, doubles with a
// decimal point or an exponent (1.0, not 1), quoted strings, [lists] and {maps}
// sorted by key.
func format(value *bridgev1.Value) string {
	switch kind := value.GetKind().(type) {
	case *bridgev1.Value_NullValue:
		return "null"
	case *bridgev1.Value_BoolValue:
		return strconv.FormatBool(kind.BoolValue)
	case *bridgev1.Value_IntegerValue:
		return strconv.FormatInt(kind.IntegerValue, 10)
	case *bridgev1.Value_BigIntegerValue:
		return kind.BigIntegerValue
	case *bridgev1.Value_DoubleValue:
		text := strconv.FormatFloat(kind.DoubleValue, 'g', -1, 64)
		if !strings.ContainsAny(text, ".eIN") {
			text += ".0"
		}
		return text
	case *bridgev1.Value_StringValue:
		return strconv.Quote(kind.StringValue)
	case *bridgev1.Value_ListValue:
		items := make([]string, 0, len(kind.ListValue.GetValues()))
		for _, item := range kind.ListValue.GetValues() {
			items = append(items, format(item))
		}
		return "[" + strings.Join(items, ", ") + "]"
	case *bridgev1.Value_MapValue:
		fields := kind.MapValue.GetFields()
		keys := make([]string, 0, len(fields))
		for key := range fields {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		items := make([]string, 0, len(keys))
		for _, key := range keys {
			items = append(items, strconv.Quote(key)+": "+format(fields[key]))
		}
		return "{" + strings.Join(items, ", ") + "}"
	}
	return fmt.Sprintf("<a Value of no known kind: %v>", value)
}

func fail(text string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, text+"\n", args...)
	os.Exit(1)
}

// callEcho calls "echo" with a map argument and prints what it returns.
func callEcho(ctx context.Context, client bridgev1.BridgeClient) {
	v := &bridgev1.Value{Kind: &bridgev1.Value_MapValue{MapValue: &bridgev1.MapValue{
		Fields: map[string]*bridgev1.Value{
			"count": {Kind: &bridgev1.Value_IntegerValue{IntegerValue: 1}},
			"ratio": {Kind: &bridgev1.Value_DoubleValue{DoubleValue: 1.0}},
			"name":  {Kind: &bridgev1.Value_StringValue{StringValue: "ü"}},
		}}}}
	reply, err := client.Call(ctx, &bridgev1.CallRequest{Envelope: &bridgev1.Envelope{
		Target: &bridgev1.Target{Topic: "bridge"}, Method: "echo",
		Args: map[string]*bridgev1.Value{"value": v},
	}})
	if err != nil {
		fail("echo failed: %v", err)
	}
	// prints: result {"count": 1, "name": "ü", "ratio": 1.0}
	fmt.Println("result", format(reply.Result))
}

// callFail calls "fail", which raises ValueError("no"), and prints the error's code
// and the bridge.v1.Failure in its grpc-status-details-bin trailer.
func callFail(ctx context.Context, client bridgev1.BridgeClient) {
	_, err := client.Call(ctx, &bridgev1.CallRequest{Envelope: &bridgev1.Envelope{
		Target: &bridgev1.Target{Topic: "bridge"}, Method: "fail",
		Args: map[string]*bridgev1.Value{"message": {Kind: &bridgev1.Value_StringValue{StringValue: "no"}}},
	}})
	if st, ok := status.FromError(err); ok {
		for _, detail := range st.Details() {
			if failure, ok := detail.(*bridgev1.Failure); ok {
				// prints: Unknown REASON_ENDPOINT_ERROR builtins ValueError no
				fmt.Println(st.Code(), failure.Reason, failure.Module, failure.ClassName, failure.Message)
			}
		}
	}
	if err == nil {
		fail("fail returned without an error")
	}
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: client HOST:PORT")
	}
	conn, err := grpc.Dial(os.Args[1], grpc.WithInsecure())
	if err != nil {
		fail("dial %s: %v", os.Args[1], err)
	}
	defer conn.Close()
	client := bridgev1.NewBridgeClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	callEcho(ctx, client)
	callFail(ctx, client)
}
