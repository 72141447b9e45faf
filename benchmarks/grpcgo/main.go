// The benchmark's Bench service on grpc-go: Echo, Stream, Collect and PingPong, with a
// hand-written ServiceDesc and a codec that passes message bytes through unchanged, so
// no code generation is needed (the messages are the same protobuf bytes the Python
// systems send). Usage: grpcgo PORT. Listens on 127.0.0.1 until SIGTERM.
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

// rawCodec hands a message's bytes through: []byte in, []byte out.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T is not *[]byte", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T is not *[]byte", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// Registered under "proto": the name application/grpc (no subtype) asks for.
func (rawCodec) Name() string { return "proto" }

type bench struct{}

// The request's fields, read by hand: name = 1 (string), count = 3 (varint).
func parse(msg []byte) (name []byte, count uint64) {
	for i := 0; i < len(msg); {
		key, n := binary.Uvarint(msg[i:])
		if n <= 0 {
			return
		}
		i += n
		switch key & 7 {
		case 0:
			v, m := binary.Uvarint(msg[i:])
			if m <= 0 {
				return
			}
			if key>>3 == 3 {
				count = v
			}
			i += m
		case 2:
			l, m := binary.Uvarint(msg[i:])
			if m <= 0 || i+m+int(l) > len(msg) {
				return
			}
			if key>>3 == 1 {
				name = msg[i+m : i+m+int(l)]
			}
			i += m + int(l)
		default:
			return
		}
	}
	return
}

func stream(srv interface{}, ss grpc.ServerStream) error {
	var req []byte
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	name, count := parse(req)
	reply := append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(name)))...)
	reply = append(reply, name...)
	for i := uint64(0); i < count; i++ {
		if err := ss.SendMsg(&reply); err != nil {
			return err
		}
	}
	return nil
}

func collect(srv interface{}, ss grpc.ServerStream) error {
	n := uint64(0)
	for {
		var msg []byte
		err := ss.RecvMsg(&msg)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	reply := []byte{0x18}
	reply = binary.AppendUvarint(reply, n)
	if n == 0 {
		reply = []byte{}
	}
	return ss.SendMsg(&reply)
}

func pingPong(srv interface{}, ss grpc.ServerStream) error {
	for {
		var msg []byte
		err := ss.RecvMsg(&msg)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ss.SendMsg(&msg); err != nil {
			return err
		}
	}
}

var desc = grpc.ServiceDesc{
	ServiceName: "bench.v1.Bench",
	HandlerType: (*interface{})(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
			var msg []byte
			if err := dec(&msg); err != nil {
				return nil, err
			}
			return &msg, nil
		},
	}},
	Streams: []grpc.StreamDesc{
		{StreamName: "Stream", Handler: stream, ServerStreams: true},
		{StreamName: "Collect", Handler: collect, ClientStreams: true},
		{StreamName: "PingPong", Handler: pingPong, ServerStreams: true, ClientStreams: true},
	},
	Metadata: "bench.proto",
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grpcgo PORT")
		os.Exit(2)
	}
	encoding.RegisterCodec(rawCodec{})
	lis, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	const max = 8 << 20
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(max), grpc.MaxSendMsgSize(max))
	var impl interface{} = &bench{}
	srv.RegisterService(&desc, impl)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		srv.Stop()
	}()
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
