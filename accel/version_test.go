package accel_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// TestContractVersionDocumented keeps the version receipts carry the one the
// contract's page states, and listed among its versions.
func TestContractVersionDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/determinism.md")
	if err != nil {
		t.Fatal(err)
	}
	stated := regexp.MustCompile(`This version of the contract is \*\*([0-9-]+)\*\*`).FindSubmatch(doc)
	if stated == nil || string(stated[1]) != accel.ContractVersion {
		t.Errorf("docs/determinism.md states version %q, accel.ContractVersion is %q", stated, accel.ContractVersion)
	}
	if !regexp.MustCompile(`(?m)^- ` + regexp.QuoteMeta(accel.ContractVersion) + `:`).Match(doc) {
		t.Errorf("docs/determinism.md lists no version %s under Versions", accel.ContractVersion)
	}
}
