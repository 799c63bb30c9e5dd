package report

import "github.com/robfig/cron/v3"

// CronParser parses report.schedule: five fields (minute hour day month
// weekday), a descriptor such as @daily or @every 24h, or six fields with
// a leading seconds field ("*/30 * * * * *": every 30 seconds).
var CronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
