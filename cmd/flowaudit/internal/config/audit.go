package config

import (
	"fmt"

	"github.com/flowaudit/flowaudit/report"
)

// AuditConfiguration is the audit section.
type AuditConfiguration struct {
	// DigestSchedule is a cron expression on which `flowaudit run` sends
	// the digest of the last 24 hours (`audit digest`) to every
	// alerts.webhooks endpoint; "" (the default) sends none. Five fields
	// (minute hour day month weekday), a descriptor such as @daily or
	// @every 12h, or six fields with a leading seconds field.
	DigestSchedule string `yaml:"digest_schedule"`
}

// Validate checks the section; errors name the key.
func (c AuditConfiguration) Validate() error {
	if c.DigestSchedule == "" {
		return nil
	}
	if _, err := report.CronParser.Parse(c.DigestSchedule); err != nil {
		return fmt.Errorf("audit.digest_schedule: %q: %v (use a 5-field cron expression such as \"0 8 * * *\", @daily, or \"\" to send no digest)", c.DigestSchedule, err)
	}
	return nil
}
