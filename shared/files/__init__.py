"""Files in and out (DESIGN §9): the pure layers the import and export routes call.

Nothing here touches the database or HTTP. Readers take a byte stream (or, for DHIS2 JSON and Excel, a
seekable file) and yield rows one by one, so that a route can stream a file of a million rows in flat
memory; writers yield or write bytes the same way. Every error is a `FileError` (row, column, value,
message) numbered as a spreadsheet numbers rows: the header is row 1.
"""
