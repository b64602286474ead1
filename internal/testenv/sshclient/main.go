// Command sshclient is the test suite's ssh client (busybox has none): it authenticates with the
// agent at $SSH_AUTH_SOCK only, runs one command and copies its stdout. Built statically by
// testenv.BuildSSHClient and copied into test images.
//
//	sshclient HOST:PORT COMMAND
package main

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: sshclient HOST:PORT COMMAND")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "sshclient:", err)
		os.Exit(1)
	}
}

func run(addr, command string) error {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return fmt.Errorf("SSH_AUTH_SOCK is not set")
	}
	ac, err := net.Dial("unix", sock)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer ac.Close()
	cfg := &ssh.ClientConfig{
		User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(agent.NewClient(ac).Signers)},
		// Only ever pointed at the test's own sshd on loopback, whose host key is throwaway.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), //nolint:gosec
	}
	c, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	s.Stdout, s.Stderr = os.Stdout, os.Stderr
	return s.Run(command)
}
