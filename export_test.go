package caudal

// InstallSeams is the option the optimization layer and the runner get
// through engine.Install, for tests that install fakes of the seams.
var InstallSeams = installSeams
