// The playbook editor's enhancement (CSP: script-src 'self'). Without it the problem links
// still jump to the editor; with it they also select the named line in the textarea.
(function () {
  "use strict";
  var source = document.getElementById("source");
  if (!source) { return; }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.goto-line") : null;
    if (!link) { return; }
    event.preventDefault();
    var wanted = parseInt(link.getAttribute("data-line"), 10) || 1;
    var lines = source.value.split("\n");
    var start = 0;
    for (var i = 0; i < wanted - 1 && i < lines.length; i++) { start += lines[i].length + 1; }
    var end = start + (lines[wanted - 1] || "").length;
    source.focus();
    source.setSelectionRange(start, end);
    var lineHeight = source.scrollHeight / Math.max(lines.length, 1);
    source.scrollTop = Math.max(0, (wanted - 5) * lineHeight);
  });
}());
