package mailproxy

import (
	"bufio"
	"bytes"
	"io"
)

const (
	bufSize = 16 << 10 // a TLS record's worth
	headMax = 256      // enough for a tag, a status, a reply code and a response code
	tailMax = 32       // enough for an IMAP literal marker: ~{<20 digits>+}\r\n
)

// lineReader relays one direction of a session: it reads lines from src and
// writes them to dst, so that the relay can look at each line's start (head)
// and end (tail) while the bytes stream through. A line longer than the
// buffer is forwarded chunk by chunk, never held whole, and literal data
// (IMAP {n}, SMTP BDAT) is copied raw with copyN. Nothing is allocated per
// line.
//
// The last chunk of each line is held back until the caller calls forward,
// so that the relay can change its state (e.g. "the client's next bytes are
// a message body") before the peer sees the line and can answer it. Output is
// buffered and flushed whenever reading src would block, so many small lines
// go out in few writes (and few TLS records).
type lineReader struct {
	src *bufio.Reader
	dst *bufio.Writer
	// beforeBlock, if set, runs before every read that may block: the
	// server side uses it to arm or clear the reply deadline.
	beforeBlock func()

	head    []byte // the line's first bytes (up to headMax), in headBuf
	headBuf [headMax]byte
	tail    [tailMax]byte // the line's last bytes, right-aligned
	n       int           // length of the line
	last    []byte        // the held-back last chunk; valid until the next read
}

func newLineReader(src io.Reader, dst io.Writer) *lineReader {
	return &lineReader{src: bufio.NewReaderSize(src, bufSize), dst: bufio.NewWriterSize(dst, bufSize)}
}

// writeError marks an error writing to the destination, so that the relay
// can tell "the source hung up" from "the destination hung up".
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// next reads the next line, forwarding all of it but its last chunk.
func (r *lineReader) next() error {
	r.head, r.n, r.last = nil, 0, nil
	for {
		if err := r.mayBlock(true); err != nil {
			return err
		}
		chunk, err := r.src.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			r.note(chunk)
			if _, err := r.dst.Write(chunk); err != nil {
				return writeError{err}
			}
			continue
		}
		if err != nil {
			if len(chunk) > 0 { // the peer hung up mid-line: deliver what it said
				_, _ = r.dst.Write(chunk)
			}
			_ = r.dst.Flush()
			return err
		}
		r.note(chunk)
		r.last = chunk
		return nil
	}
}

// mayBlock flushes the output and runs beforeBlock when the next read would
// wait for the peer: nothing is buffered, or (for a line) no line end is.
func (r *lineReader) mayBlock(line bool) error {
	buffered := r.src.Buffered()
	if buffered > 0 {
		if !line {
			return nil
		}
		if b, _ := r.src.Peek(buffered); bytes.IndexByte(b, '\n') >= 0 {
			return nil
		}
	}
	if err := r.dst.Flush(); err != nil {
		return writeError{err}
	}
	if r.beforeBlock != nil {
		r.beforeBlock()
	}
	return nil
}

func (r *lineReader) note(chunk []byte) {
	if r.head == nil {
		r.head = r.headBuf[:copy(r.headBuf[:], chunk)]
	}
	r.n += len(chunk)
	if len(chunk) >= tailMax {
		copy(r.tail[:], chunk[len(chunk)-tailMax:])
	} else {
		copy(r.tail[:], r.tail[len(chunk):])
		copy(r.tail[tailMax-len(chunk):], chunk)
	}
}

// tailBytes returns the line's last bytes (fewer for a short line).
func (r *lineReader) tailBytes() []byte { return r.tail[tailMax-min(r.n, tailMax):] }

// forward writes the held-back last chunk of the line.
func (r *lineReader) forward() error {
	if _, err := r.dst.Write(r.last); err != nil {
		return writeError{err}
	}
	r.last = nil
	return nil
}

// copyN copies n bytes from src to dst as they come, without looking at them.
func (r *lineReader) copyN(n int64) error {
	for n > 0 {
		if err := r.mayBlock(false); err != nil {
			return err
		}
		if _, err := r.src.Peek(1); err != nil {
			_ = r.dst.Flush()
			return err
		}
		k := int(min(int64(r.src.Buffered()), n))
		b, _ := r.src.Peek(k)
		if _, err := r.dst.Write(b); err != nil {
			return writeError{err}
		}
		_, _ = r.src.Discard(k)
		n -= int64(k)
	}
	return nil
}

// startTLS handles a STARTTLS between the client and the provider (not the
// relay's own): it flushes the command or its answer, learns from agreed
// (which hands the provider's answer from one direction to the other)
// whether TLS starts, and if so copies the rest of the direction without
// reading it, since the relay cannot read TLS. tunnel reports that the
// direction is over.
func (r *lineReader) startTLS(agreed func() bool) (tunnel bool, err error) {
	if err := r.dst.Flush(); err != nil {
		return true, writeError{err}
	}
	if !agreed() {
		return false, nil
	}
	return true, r.copyRest()
}

// copyRest copies everything until src ends, without looking at it.
func (r *lineReader) copyRest() error {
	if err := r.dst.Flush(); err != nil {
		return writeError{err}
	}
	_, err := r.src.WriteTo(r.dst)
	if ferr := r.dst.Flush(); err == nil && ferr != nil {
		err = writeError{ferr}
	}
	return err
}

// literal parses an IMAP literal marker at the end of a line: {n}, {n+} or
// ~{n} (RFC 9051 §4.3, RFC 7888, RFC 3516), and returns n.
func literal(tail []byte) (int64, bool) {
	tail = bytes.TrimSuffix(tail, []byte("\n"))
	tail = bytes.TrimSuffix(tail, []byte("\r"))
	if len(tail) < 3 || tail[len(tail)-1] != '}' {
		return 0, false
	}
	i := len(tail) - 2
	if tail[i] == '+' || tail[i] == '-' { // LITERAL+ / LITERAL-
		i--
	}
	end := i + 1
	for i >= 0 && tail[i] >= '0' && tail[i] <= '9' {
		i--
	}
	if i < 0 || tail[i] != '{' || i+1 == end || end-(i+1) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range tail[i+1 : end] {
		n = n*10 + int64(c-'0')
	}
	return n, true
}
