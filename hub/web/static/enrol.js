// Enrolment by tapping: count the seconds down and reload the page (which asks the
// hub) every 1.5 s while it waits for the badge. Without JavaScript, "Vérifier" does it.
(function () {
  "use strict";
  var box = document.getElementById("enrolment");
  if (!box || box.dataset.waiting !== "true") return;
  var left = document.getElementById("seconds-left");
  var seconds = left ? parseInt(left.dataset.seconds, 10) : 0;
  setInterval(function () {
    if (left && seconds > 0) { seconds -= 1; left.textContent = String(seconds); }
  }, 1000);
  setTimeout(function () { window.location.reload(); }, 1500);
})();
