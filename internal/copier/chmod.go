package copier

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
)

// Chmod is a parsed COPY/ADD --chmod value: an octal mode, which replaces the permission bits,
// or a chmod(1) symbolic mode ("u=rw,g=r,o=r", "a+X", "go-w"), which edits the source's bits.
type Chmod struct {
	octal    *fs.FileMode
	symbolic string
	cmds     []modeCmd
}

// modeCmd is one primitive edit a symbolic mode compiles to.
type modeCmd struct {
	op   byte   // '+', '-', 'X' (add bits if the source is a directory or executable), 'u'/'g'/'o' (copy a class)
	bits uint16 // the bits '+'/'-'/'X' touch; for a copy, the bits it may change
	// For a copy: which classes receive the copied triad, and whether they are cleared and/or set.
	toU, toG, toO, clear, set bool
}

const (
	modeSetuid = 0o4000
	modeSetgid = 0o2000
	modeSticky = 0o1000
	// modeStandard is what "a" names: everything but the sticky bit.
	modeStandard = modeSetuid | modeSetgid | 0o777
)

// errChmodSyntax is the error for a value that is neither octal nor a symbolic mode.
var errChmodSyntax = errors.New("invalid syntax")

// ParseChmod parses a --chmod value as BuildKit v0.33.1 does (dockerfile2llb dispatchCopy, then
// fsutil's copy with github.com/tonistiigi/dchapes-mode and a zero umask): a value that parses as
// octal is a mode up to 07777; anything else must be a BSD setmode(3) symbolic mode. A value
// that starts like a number but is not octal gets BuildKit's octal error (testCopyInvalidChmod).
func ParseChmod(s string) (*Chmod, error) {
	octalErr := fmt.Errorf("invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777", s)
	if v, err := strconv.ParseUint(s, 8, 32); err == nil {
		if v > 0o7777 {
			return nil, octalErr
		}
		m := fileModeFromBits(uint16(v))
		return &Chmod{octal: &m}, nil
	}
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return nil, octalErr
	}
	cmds, err := compileSymbolic(s)
	if err != nil {
		return nil, fmt.Errorf("invalid chmod parameter: '%v': %w", s, err)
	}
	return &Chmod{symbolic: s, cmds: cmds}, nil
}

// OctalChmod is the Chmod of an octal mode given as a FileMode (setuid etc. as fs.Mode bits).
func OctalChmod(m fs.FileMode) *Chmod {
	m &= fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	return &Chmod{octal: &m}
}

// IsOctal reports whether the mode replaces every permission bit, so the result does not depend
// on the source's mode.
func (c *Chmod) IsOctal() bool { return c.octal != nil }

func (c *Chmod) String() string {
	if c.octal != nil {
		return fmt.Sprintf("%04o", modeBits(*c.octal))
	}
	return c.symbolic
}

// Apply returns the mode an entry whose source mode is m gets; the type bits are kept.
func (c *Chmod) Apply(m fs.FileMode) fs.FileMode {
	if c.octal != nil {
		return m.Type() | *c.octal
	}
	orig := modeBits(m)
	cur := orig
	for _, cmd := range c.cmds {
		switch cmd.op {
		case '+':
			cur |= cmd.bits
		case '-':
			cur &^= cmd.bits
		case 'X':
			// Judged on the mode before any edit, as setmode(3) does, so "a-x,a+X" still marks
			// a file that was executable.
			if orig&0o111 != 0 || m.IsDir() {
				cur |= cmd.bits
			}
		case 'u', 'g', 'o':
			var shift uint
			switch cmd.op {
			case 'u':
				shift = 6
			case 'g':
				shift = 3
			}
			triad := cur >> shift & 0o7
			for _, to := range []struct {
				on    bool
				shift uint
			}{{cmd.toU, 6}, {cmd.toG, 3}, {cmd.toO, 0}} {
				if !to.on {
					continue
				}
				if cmd.clear {
					clr := triad
					if cmd.set {
						clr = 0o7 // "=": the class is replaced, not only the copied bits
					}
					cur &^= clr << to.shift & cmd.bits
				}
				if cmd.set {
					cur |= triad << to.shift & cmd.bits
				}
			}
		}
	}
	return m.Type() | fileModeFromBits(cur)
}

// compileSymbolic turns a symbolic mode into primitive edits. The grammar and its corner cases
// are setmode(3)'s: clauses separated by ',', each "[ugoa]*" followed by one or more
// "[+-=][rwxXst|ugo]*" actions; "s" and "t" are ignored for "o" alone; "=" clears the named
// classes (all but sticky when none is named) once per action; "X" after "-" means "x".
func compileSymbolic(s string) ([]modeCmd, error) {
	var cmds []modeCmd
	add := func(op byte, who, perm uint16) {
		mask := who
		if who == 0 {
			mask = 0o7777
		}
		if op == '=' {
			clr := who
			if who == 0 {
				clr = modeStandard
			}
			cmds = append(cmds, modeCmd{op: '-', bits: clr})
			op = '+'
		}
		cmds = append(cmds, modeCmd{op: op, bits: mask & perm})
	}
	addCopy := func(from, op byte, who uint16) {
		c := modeCmd{op: from, bits: 0xffff}
		if who == 0 {
			c.toU, c.toG, c.toO, c.bits = true, true, true, 0o7777
		} else {
			c.toU, c.toG, c.toO = who&0o400 != 0, who&0o040 != 0, who&0o004 != 0
		}
		c.clear = op == '-' || op == '='
		c.set = op == '+' || op == '='
		cmds = append(cmds, c)
	}
	for {
		var who uint16
	who:
		for ; ; s = s[1:] {
			if s == "" {
				return nil, errChmodSyntax
			}
			switch s[0] {
			case 'a':
				who |= modeStandard
			case 'u':
				who |= modeSetuid | 0o700
			case 'g':
				who |= modeSetgid | 0o070
			case 'o':
				who |= 0o007
			default:
				break who
			}
		}
		for {
			op := s[0]
			s = s[1:]
			if op != '+' && op != '-' && op != '=' {
				return nil, errChmodSyntax
			}
			who &^= modeSticky
			cleared := false
			var perm, permX uint16
			// specialOK: "s" and "t" mean nothing for "o" alone.
			specialOK := who == 0 || who&^0o007 != 0
		perms:
			for ; ; s = s[1:] {
				var b byte
				if s != "" {
					b = s[0]
				}
				switch b {
				case 'r':
					perm |= 0o444
				case 'w':
					perm |= 0o222
				case 'x':
					perm |= 0o111
				case 'X':
					if op == '-' {
						perm |= 0o111
					} else {
						permX = 0o111
					}
				case 's':
					if specialOK {
						perm |= modeSetuid | modeSetgid
					}
				case 't':
					if specialOK {
						who |= modeSticky
						perm |= modeSticky
					}
				case 'u', 'g', 'o':
					if perm != 0 {
						add(op, who, perm)
						perm = 0
					}
					if op == '=' {
						cleared = true
					}
					if permX != 0 {
						add('X', who, permX)
						permX = 0
					}
					addCopy(b, op, who)
				default:
					if perm != 0 || (op == '=' && !cleared) {
						add(op, who, perm)
					}
					if permX != 0 {
						add('X', who, permX)
					}
					break perms
				}
			}
			if s == "" {
				return cmds, nil
			}
			if s[0] == ',' {
				s = s[1:]
				break
			}
		}
	}
}

func modeBits(m fs.FileMode) uint16 {
	b := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= modeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		b |= modeSetgid
	}
	if m&fs.ModeSticky != 0 {
		b |= modeSticky
	}
	return b
}

func fileModeFromBits(b uint16) fs.FileMode {
	m := fs.FileMode(b & 0o777)
	if b&modeSetuid != 0 {
		m |= fs.ModeSetuid
	}
	if b&modeSetgid != 0 {
		m |= fs.ModeSetgid
	}
	if b&modeSticky != 0 {
		m |= fs.ModeSticky
	}
	return m
}
