package capture

// The settings rows render under, wherever tandem reads them: capture
// version 4 sets them on the trigger function, the WAL stream on its
// replication connection, and the engine on its node sessions. A key's
// text is then the same whoever wrote the row and whichever way it came.
const (
	RenderTimeZone      = "UTC"
	RenderIntervalStyle = "postgres"
	RenderFloatDigits   = "3"
)
