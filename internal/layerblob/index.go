package layerblob

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Index lists a blob's members in order. It is a cache of facts about the blob: a missing or
// damaged index only means the next blob compresses everything.
type Index struct {
	Compressor string
	Members    []Member
}

// magic starts an encoded index; the version is in it. v2 adds each member's hash states
// (Member.End, Member.BlobEnd); v1 indexes still decode, without states.
const (
	magic   = "strata-layerblob-index-v2\n"
	magicV1 = "strata-layerblob-index-v1\n"
)

const memberLen = 32 + 8 + 8 + 8 + 4 + 32

// Encode serializes the index: magic, compressor, the lengths of a member's End and BlobEnd
// states (0: that state is not kept, as when any member lacks it), members as fixed-size records
// (states after each), then a sha256 of everything before it, so that a torn or damaged file is
// rejected as a whole.
func (x *Index) Encode() []byte {
	var b bytes.Buffer
	b.WriteString(magic)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(x.Compressor)))
	b.Write(n[:])
	b.WriteString(x.Compressor)
	stateLen, blobStateLen := uniformLen(x.Members, func(m Member) []byte { return m.End }),
		uniformLen(x.Members, func(m Member) []byte { return m.BlobEnd })
	binary.BigEndian.PutUint64(n[:], uint64(stateLen))
	b.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(blobStateLen))
	b.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(len(x.Members)))
	b.Write(n[:])
	var rec [memberLen]byte
	for _, m := range x.Members {
		copy(rec[:32], m.Key[:])
		binary.BigEndian.PutUint64(rec[32:], uint64(m.Offset))
		binary.BigEndian.PutUint64(rec[40:], uint64(m.Size))
		binary.BigEndian.PutUint64(rec[48:], uint64(m.USize))
		binary.BigEndian.PutUint32(rec[56:], m.CRC)
		copy(rec[60:], m.Sum[:])
		b.Write(rec[:])
		if stateLen > 0 {
			b.Write(m.End)
		}
		if blobStateLen > 0 {
			b.Write(m.BlobEnd)
		}
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// uniformLen is the length every member's state has, 0 if they differ.
func uniformLen(ms []Member, state func(Member) []byte) int {
	if len(ms) == 0 {
		return 0
	}
	l := len(state(ms[0]))
	for _, m := range ms {
		if len(state(m)) != l {
			return 0
		}
	}
	return l
}

// Decode parses an encoded index and checks its checksum and that its members tile a blob of
// blobSize bytes (each starting where the previous ended, the last ending at blobSize).
func Decode(data []byte, blobSize int64) (*Index, error) {
	v1 := len(data) >= len(magicV1) && string(data[:len(magicV1)]) == magicV1
	if len(data) < len(magic)+16+32 || string(data[:len(magic)]) != magic && !v1 {
		return nil, errors.New("layerblob index: not an index")
	}
	body, sum := data[:len(data)-32], data[len(data)-32:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, errors.New("layerblob index: checksum mismatch")
	}
	p := body[len(magic):]
	cl := binary.BigEndian.Uint64(p)
	p = p[8:]
	if cl > uint64(len(p)) {
		return nil, errors.New("layerblob index: truncated")
	}
	x := &Index{Compressor: string(p[:cl])}
	p = p[cl:]
	var stateLen, blobStateLen uint64
	if !v1 {
		if len(p) < 16 {
			return nil, errors.New("layerblob index: truncated")
		}
		stateLen, blobStateLen = binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
		p = p[16:]
		if stateLen > 1024 || blobStateLen > 1024 {
			return nil, errors.New("layerblob index: implausible state length")
		}
	}
	if len(p) < 8 {
		return nil, errors.New("layerblob index: truncated")
	}
	n := binary.BigEndian.Uint64(p)
	p = p[8:]
	recLen := memberLen + stateLen + blobStateLen
	if n != uint64(len(p))/recLen || uint64(len(p))%recLen != 0 {
		return nil, errors.New("layerblob index: member count does not match its length")
	}
	var off int64
	for i := range int(n) {
		r := p[uint64(i)*recLen:]
		var m Member
		copy(m.Key[:], r[:32])
		m.Offset = int64(binary.BigEndian.Uint64(r[32:]))
		m.Size = int64(binary.BigEndian.Uint64(r[40:]))
		m.USize = int64(binary.BigEndian.Uint64(r[48:]))
		m.CRC = binary.BigEndian.Uint32(r[56:])
		copy(m.Sum[:], r[60:92])
		if stateLen > 0 {
			m.End = bytes.Clone(r[memberLen : memberLen+stateLen])
		}
		if blobStateLen > 0 {
			m.BlobEnd = bytes.Clone(r[memberLen+stateLen : recLen])
		}
		if m.Offset != off || m.Size <= 0 || m.USize < 0 {
			return nil, fmt.Errorf("layerblob index: member %d does not follow the previous one", i)
		}
		off += m.Size
		x.Members = append(x.Members, m)
	}
	if off != blobSize {
		return nil, fmt.Errorf("layerblob index: members cover %d bytes, blob has %d", off, blobSize)
	}
	return x, nil
}
