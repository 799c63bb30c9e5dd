package report

import "github.com/robfig/cron/v3"

// CronParser parses report.schedule: five fields (minute hour day month
// weekday) or a descriptor such as @daily or @every 24h.
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
