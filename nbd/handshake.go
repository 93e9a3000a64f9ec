package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// errAborted means the client ended the handshake with NBD_OPT_ABORT.
var errAborted = errors.New("nbd: client aborted the handshake")

// negotiate runs the fixed newstyle handshake. It returns the backend and
// name of the export chosen with NBD_OPT_GO or NBD_OPT_EXPORT_NAME, or an
// error: the connection must then close.
func (s *session) negotiate(ctx context.Context) (Backend, string, error) {
	if err := s.greet(); err != nil {
		return nil, "", err
	}
	for {
		code, data, err := s.readOption()
		if err != nil {
			return nil, "", err
		}
		b, name, done, err := s.handleOption(ctx, code, data)
		if err != nil || done {
			s.allocation = s.allocation && name == s.allocationExport
			return b, name, err
		}
	}
}

// greet sends the server's greeting and reads the client's flags.
func (s *session) greet() error {
	hello := binary.BigEndian.AppendUint64(nil, nbdMagic)
	hello = binary.BigEndian.AppendUint64(hello, optMagic)
	hello = binary.BigEndian.AppendUint16(hello, flagFixedNewstyle|flagNoZeroes)
	if _, err := s.w.Write(hello); err != nil {
		return fmt.Errorf("sending greeting: %w", err)
	}
	var flags [4]byte
	if _, err := io.ReadFull(s.r, flags[:]); err != nil {
		return fmt.Errorf("reading client flags: %w", err)
	}
	f := binary.BigEndian.Uint32(flags[:])
	if f&^(flagFixedNewstyle|flagNoZeroes) != 0 {
		return fmt.Errorf("client flags %#x: %w", f, errMalformed)
	}
	s.noZeroes = f&flagNoZeroes != 0
	return nil
}

// readOption reads one option header and its data.
func (s *session) readOption() (uint32, []byte, error) {
	var hdr [optHeaderLen]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("reading option header: %w", err)
	}
	code, length, err := parseOptionHeader(hdr[:])
	if err != nil {
		return 0, nil, err
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(s.r, data); err != nil {
		return 0, nil, fmt.Errorf("reading option %d: %w", code, err)
	}
	return code, data, nil
}

// handleOption answers one option. done means the handshake is over: with
// a backend, transmission starts.
func (s *session) handleOption(ctx context.Context, code uint32, data []byte) (b Backend, name string, done bool, err error) {
	switch code {
	case optExportName:
		b, err = s.exportName(ctx, string(data))
		return b, string(data), true, err
	case optAbort:
		_ = s.reply(code, repAck, nil)
		return nil, "", true, errAborted
	case optList:
		return nil, "", false, s.list(ctx, data)
	case optInfo, optGo:
		return s.info(ctx, code, data)
	case optStructuredReply:
		return nil, "", false, s.structuredReply(data)
	case optListMetaContext, optSetMetaContext:
		return nil, "", false, s.metaContext(ctx, code, data)
	default:
		return nil, "", false, s.replyErr(code, repErrUnsup, "option not supported")
	}
}

// exportName answers NBD_OPT_EXPORT_NAME, which has no error reply: an
// unknown name closes the connection.
func (s *session) exportName(ctx context.Context, name string) (Backend, error) {
	b, err := s.srv.cfg.Exports.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	msg := binary.BigEndian.AppendUint64(nil, uint64(b.Size()))
	msg = binary.BigEndian.AppendUint16(msg, transmissionFlags)
	if !s.noZeroes {
		msg = append(msg, make([]byte, 124)...)
	}
	if _, err := s.w.Write(msg); err != nil {
		s.srv.release(name, b)
		return nil, fmt.Errorf("answering export name: %w", err)
	}
	return b, nil
}

// structuredReply answers NBD_OPT_STRUCTURED_REPLY: from now on replies
// are structured.
func (s *session) structuredReply(data []byte) error {
	if len(data) != 0 {
		return s.replyErr(optStructuredReply, repErrInvalid, "structured reply takes no data")
	}
	s.structured = true
	return s.reply(optStructuredReply, repAck, nil)
}

// metaContext answers NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT. The only context is base:allocation; SET
// replaces the previous selection.
func (s *session) metaContext(ctx context.Context, code uint32, data []byte) error {
	if !s.structured {
		return s.replyErr(code, repErrInvalid, "meta contexts need structured replies")
	}
	req, err := parseMetaRequest(data)
	if err != nil {
		return s.replyErr(code, repErrInvalid, "malformed meta context request")
	}
	b, err := s.srv.cfg.Exports.Open(ctx, req.name)
	if err != nil {
		return s.replyErr(code, repErrUnknown, "unknown export")
	}
	s.srv.release(req.name, b)
	match := matchesAllocation(req.queries, code == optListMetaContext)
	if code == optSetMetaContext {
		s.allocation, s.allocationExport = match, req.name
	}
	if match {
		if err := s.reply(code, repMetaContext, metaContextData()); err != nil {
			return err
		}
	}
	return s.reply(code, repAck, nil)
}

// list answers NBD_OPT_LIST.
func (s *session) list(ctx context.Context, data []byte) error {
	if len(data) != 0 {
		return s.replyErr(optList, repErrInvalid, "list takes no data")
	}
	names, err := s.srv.cfg.Exports.List(ctx)
	if err != nil {
		return s.replyErr(optList, repErrUnsup, "listing failed")
	}
	for _, name := range names {
		if err := s.reply(optList, repServer, listEntryData(name)); err != nil {
			return err
		}
	}
	return s.reply(optList, repAck, nil)
}

// info answers NBD_OPT_INFO and NBD_OPT_GO; GO with a known export ends
// the handshake.
func (s *session) info(ctx context.Context, code uint32, data []byte) (Backend, string, bool, error) {
	req, err := parseInfoRequest(data)
	if err != nil {
		return nil, "", false, s.replyErr(code, repErrInvalid, "malformed info request")
	}
	b, err := s.srv.cfg.Exports.Open(ctx, req.name)
	if errors.Is(err, ErrUnknownExport) {
		return nil, "", false, s.replyErr(code, repErrUnknown, "unknown export")
	}
	if err != nil {
		return nil, "", false, s.replyErr(code, repErrUnknown, err.Error())
	}
	if err := s.sendInfo(code, b, req); err != nil || code != optGo {
		s.srv.release(req.name, b)
		return nil, "", false, err
	}
	return b, req.name, true, nil
}

// sendInfo sends the NBD_REP_INFO replies answering req, then the ACK.
func (s *session) sendInfo(code uint32, b Backend, req infoRequest) error {
	for _, d := range s.infoReplies(b, req) {
		if err := s.reply(code, repInfo, d); err != nil {
			return err
		}
	}
	return s.reply(code, repAck, nil)
}

// infoReplies returns the NBD_REP_INFO payloads answering req.
func (s *session) infoReplies(b Backend, req infoRequest) [][]byte {
	out := [][]byte{infoExportData(b.Size(), transmissionFlags)}
	if slices.Contains(req.infos, infoName) {
		out = append(out, infoStringData(infoName, req.name))
	}
	if d, ok := b.(Describer); ok && slices.Contains(req.infos, infoDescription) {
		out = append(out, infoStringData(infoDescription, d.Description()))
	}
	if slices.Contains(req.infos, infoBlockSize) {
		out = append(out, infoBlockSizeData(s.srv.cfg.MaxRequestBytes))
	}
	return out
}

// reply sends one option reply.
func (s *session) reply(code, typ uint32, data []byte) error {
	if _, err := s.w.Write(appendOptionReply(nil, code, typ, data)); err != nil {
		return fmt.Errorf("answering option %d: %w", code, err)
	}
	return nil
}

// replyErr sends an option error reply with a human-readable message.
func (s *session) replyErr(code, typ uint32, msg string) error {
	return s.reply(code, typ, []byte(msg))
}
